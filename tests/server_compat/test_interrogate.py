"""POST /sdapi/v1/interrogate as AUTOMATIC1111 has it, driven by the real
`webuiapi` client: the caption is the studio's analysis (the image's own
prompt when it carries its settings, else the embedded judge's description)."""

from __future__ import annotations

import base64
import io

import httpx
import numpy as np
import pytest
from PIL import Image

SMALL = dict(width=64, height=64, steps=2, cfg_scale=7.0)


def b64(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_interrogate_gives_the_prompt_of_an_image_with_settings(api):
    made = api.txt2img(prompt="a yellow star at the top", seed=5, **SMALL)
    assert "parameters" in made.image.info
    result = api.interrogate(made.image)  # webuiapi sends it with its text chunks
    assert result.info == "a yellow star at the top"
    assert api.interrogate(made.image, model="deepdanbooru").info == "a yellow star at the top"


def test_interrogate_describes_an_image_without_settings(api):
    from imagestudio.embedded import judge

    scene = Image.new("RGB", (64, 64), (20, 20, 120))
    scene.paste((230, 30, 30), (8, 20, 28, 40))
    caption = api.interrogate(scene).info
    assert isinstance(caption, str)
    if judge.WEIGHTS.exists():
        assert caption and "background" in caption


@pytest.mark.parametrize("body, status, words", [
    ({"image": base64.b64encode(b"not an image at all").decode(), "model": "clip"}, 400, "could not be read"),
    ({"image": "", "model": "clip"}, 404, "Image not found"),
    ({"model": "clip"}, 404, "Image not found"),
    ({"image": "x" * 12, "model": "blip2"}, 404, "Model not found"),
    ([1, 2, 3], 400, "JSON object"),
])
def test_interrogate_refuses_bad_input_with_a1111_errors(local_server, body, status, words):
    response = httpx.post(f"{local_server.url}/sdapi/v1/interrogate", json=body, timeout=60)
    assert response.status_code == status, response.text
    error = response.json()
    assert set(error) >= {"error", "detail"} and words in error["detail"]


def test_interrogate_of_a_large_noise_image_and_webuiapi_errors(api):
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 255, (256, 384, 3), dtype=np.uint8))
    assert isinstance(api.interrogate(noise).info, str)
    with pytest.raises(RuntimeError) as info:
        api.interrogate("bm90IGFuIGltYWdl")  # base64 of "not an image"
    assert info.value.args[0] == 400


def test_interrogate_needs_a_key_on_a_shared_server(shared_server):
    image = b64(Image.new("RGB", (64, 64), (200, 200, 200)))
    anonymous = httpx.post(f"{shared_server.url}/sdapi/v1/interrogate", json={"image": image}, timeout=60)
    assert anonymous.status_code == 401
    key = shared_server.add_user("ivy", credits=1)
    with shared_server.client(key) as client:
        answer = client.post("/sdapi/v1/interrogate", json={"image": image, "model": "clip"})
        assert answer.status_code == 200 and set(answer.json()) == {"caption"}
        assert client.get("/api/me").json()["credits"] == 1, "interrogating costs nothing"
