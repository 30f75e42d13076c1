"""The OpenAI Images API, driven by the real `openai` SDK against a real
server on a loopback port."""

from __future__ import annotations

import base64
import io

import httpx
import numpy as np
import openai
import pytest
from PIL import Image

from imagestudio.store.metadata import read_parameters


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def decoded(item) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(item.b64_json)))


@pytest.fixture
def client(local_server):
    # Local mode accepts any key; max_retries=0 so a failure shows at once.
    return openai.OpenAI(base_url=local_server.url + "/v1", api_key="sk-local", max_retries=0)


def test_generate_b64(client):
    result = client.images.generate(model="tiny", prompt="a blue square", n=2, size="64x64",
                                    response_format="b64_json")
    assert result.created > 0 and len(result.data) == 2
    images = [decoded(item) for item in result.data]
    assert all(im.size == (64, 64) for im in images)
    assert "a blue square" in images[0].info["parameters"]
    assert result.data[0].revised_prompt is None  # drawn as asked


def test_generate_with_studio_extensions(client):
    first = client.images.generate(model="tiny", prompt="a cat", size="64x64", response_format="b64_json",
                                   style="Comic", extra_body={"seed": 42, "negative_prompt": "dog"})
    params = decoded(first.data[0]).info["parameters"]
    assert "Seed: 42" in params and "Style: Comic" in params and "Negative prompt:" in params
    assert first.data[0].revised_prompt and "a cat" in first.data[0].revised_prompt  # the style changed the prompt
    again = client.images.generate(model="tiny", prompt="a cat", size="64x64", response_format="b64_json",
                                   style="Comic", extra_body={"seed": 42, "negative_prompt": "dog"})
    assert again.data[0].b64_json == first.data[0].b64_json


def test_generate_url_is_fetchable(client, local_server):
    result = client.images.generate(model="dall-e-3", prompt="a yellow sun", size="64x64", response_format="url")
    url = result.data[0].url
    assert url.startswith(local_server.url + "/")
    response = httpx.get(url, headers={"Authorization": "Bearer sk-local"})
    assert response.status_code == 200
    assert "a yellow sun" in read_parameters(response.content)


def test_edit_repaints_only_the_transparent_mask_area(client):
    rng = np.random.default_rng(1)
    source = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    mask = Image.new("RGBA", (64, 64), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (32, 0, 64, 64))  # right half transparent: repaint it
    result = client.images.edit(
        model="tiny", image=("source.png", png(source), "image/png"), mask=("mask.png", png(mask), "image/png"),
        prompt="a red flower", n=1, size="64x64", response_format="b64_json")
    out = np.asarray(decoded(result.data[0]).convert("RGB")).astype(int)
    src = np.asarray(source).astype(int)
    assert np.array_equal(out[:, :32], src[:, :32]), "opaque mask pixels must be kept"
    assert np.abs(out[:, 34:] - src[:, 34:]).mean() > 5, "transparent mask pixels must be repainted"


def test_edit_without_mask_uses_image_transparency(client):
    source = Image.new("RGBA", (64, 64), (0, 128, 0, 255))
    source.paste((0, 0, 0, 0), (0, 0, 32, 32))
    result = client.images.edit(model="tiny", image=("s.png", png(source), "image/png"), prompt="a cat",
                                response_format="b64_json")
    out = np.asarray(decoded(result.data[0]).convert("RGB")).astype(int)
    assert (out[40:, 40:] == [0, 128, 0]).all()


def test_create_variation_keeps_the_prompt(client):
    first = client.images.generate(model="tiny", prompt="a purple moon", size="64x64", response_format="b64_json")
    original = base64.b64decode(first.data[0].b64_json)
    result = client.images.create_variation(model="tiny", image=("moon.png", original, "image/png"), n=2,
                                            size="64x64", response_format="b64_json")
    assert len(result.data) == 2
    varied = decoded(result.data[0])
    assert varied.size == (64, 64)
    # The engine read the prompt from the image's metadata.
    assert result.data[0].revised_prompt == "a purple moon"
    assert "Mode: variation" in varied.info["parameters"]


def test_errors_are_typed(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.images.generate(model="tiny", prompt="x", n=5, size="64x64")
    assert info.value.param == "n" and "between 1 and 4" in info.value.message
    with pytest.raises(openai.BadRequestError) as info:
        client.images.generate(model="tiny", prompt="x", size="65x64")
    assert info.value.param == "size"
    with pytest.raises(openai.NotFoundError) as info:
        client.images.generate(model="no-such-model", prompt="x", size="64x64")
    assert info.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as info:
        client.images.edit(model="tiny", image=("x.png", b"not an image", "image/png"), prompt="x")
    assert "could not be read as an image" in info.value.message
    with pytest.raises(openai.BadRequestError) as info:
        client.images.edit(model="tiny", image=("x.png", png(Image.new("RGB", (64, 64))), "image/png"), prompt="x")
    assert info.value.param == "mask"
    with pytest.raises(openai.BadRequestError) as info:
        client.images.generate(model="tiny", prompt="x", size="64x64", extra_body={"output_format": "webp"})
    assert info.value.param == "output_format"
    too_big = b"\x89PNG" + bytes(21 * 1024 * 1024)  # over the 20 MB upload limit
    with pytest.raises(openai.APIStatusError) as info:
        client.images.create_variation(image=("big.png", too_big, "image/png"))
    assert info.value.status_code == 413 and info.value.code == "file_too_large"


def test_shared_mode_keys_and_credits(shared_server):
    base = shared_server.url + "/v1"
    with pytest.raises(openai.AuthenticationError) as info:
        openai.OpenAI(base_url=base, api_key="sk-wrong", max_retries=0).images.generate(
            model="tiny", prompt="x", size="64x64")
    assert info.value.body["type"] == "invalid_request_error" and info.value.code == "invalid_api_key"

    key = shared_server.add_user("openai-user", credits=2)
    client = openai.OpenAI(base_url=base, api_key=key, max_retries=0)
    result = client.images.generate(model="tiny", prompt="a dog", size="64x64", response_format="url")
    # the URL is fetchable with the same key, and only with it
    assert httpx.get(result.data[0].url, headers={"Authorization": f"Bearer {key}"}).status_code == 200
    assert httpx.get(result.data[0].url).status_code == 401
    with pytest.raises(openai.APIStatusError) as info:
        client.images.generate(model="tiny", prompt="a dog", n=4, size="64x64")
    assert info.value.status_code == 402 and info.value.body["type"] == "insufficient_quota"


def test_openapi_schema_documents_both_apis(local_server):
    schema = httpx.get(local_server.url + "/openapi.json").json()
    paths = schema["paths"]
    for path in ("/sdapi/v1/txt2img", "/sdapi/v1/img2img", "/sdapi/v1/progress", "/sdapi/v1/options",
                 "/v1/images/generations", "/v1/images/edits", "/v1/images/variations"):
        assert path in paths
    edits = paths["/v1/images/edits"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert {"image", "mask", "prompt", "n"} <= set(edits["properties"])


def test_streamed_body_over_the_limit_is_413(local_server):
    limit = local_server.settings.max_body_bytes

    def chunks():  # no Content-Length: the limit is enforced as the body streams in
        yield b'--x\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n' \
              b"Content-Type: image/png\r\n\r\n"
        for _ in range(limit // (1024 * 1024) + 2):
            yield bytes(1024 * 1024)
        yield b"\r\n--x--\r\n"

    response = httpx.post(local_server.url + "/v1/images/variations", content=chunks(),
                          headers={"Content-Type": "multipart/form-data; boundary=x"}, timeout=60)
    assert response.status_code == 413
