"""Bad input gets a clear 4xx JSON error, costs nothing, and leaves what is
stored (images, files, balance, ledger) exactly as it was."""

from __future__ import annotations

import base64
import hashlib
import io

import pytest
from PIL import Image

from serverkit import TINY, wait_job


def png(size=(64, 64), mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size).save(buf, format="PNG")
    return buf.getvalue()


BOMB = png((5000, 5000), mode="1")  # a few KB that decode to 25 megapixels

BAD_JSON_REQUESTS = [
    ({"prompt": "x" * 2001, **TINY}, 422, "prompt"),
    ({"prompt": "a cat", **dict(TINY, width=65, height=64)}, 422, "width"),
    ({"prompt": "a cat", **dict(TINY, width=1024, height=1024)}, 400, "outside"),
    ({"prompt": "a cat", **dict(TINY, count=5)}, 422, "count"),
    ({"prompt": "a cat", **dict(TINY, count=0)}, 422, "count"),
    ({"prompt": "a cat", **dict(TINY, model="nope")}, 404, "unknown model"),
    ({"prompt": "a cat", **TINY, "sampler": "Warp drive"}, 400, "sampler"),
    ({"prompt": "a cat", **TINY, "style": "Ultra mega"}, 400, "style"),
    ({"prompt": "", **TINY}, 422, "prompt is empty"),
    ({"prompt": "a cat", **TINY, "colour": "red"}, 422, "colour"),
    ({"prompt": "a cat", **TINY, "regions": [{"area": "upstairs", "prompt": "a dog"}]}, 422, "unknown area"),
    ({"prompt": "a cat", **TINY, "regions": [{"area": [0, 0, 1.5, 1], "prompt": "a dog"}]}, 422, "region box"),
    ({"prompt": "a cat", "mode": "img2img", "init_image": "bm90IGFuIGltYWdl" * 8, **TINY}, 400, "could not be read"),
    ({"prompt": "a cat", "mode": "img2img", "init_image": base64.b64encode(BOMB).decode(), **TINY}, 400, "pixels"),
    ({"prompt": "a cat", "mode": "img2img", "init_image": "/etc/passwd", **TINY}, 400, "file paths"),
    ({"prompt": "a cat", "mode": "img2img", "init_image": "image:doesnotexist", **TINY}, 404, "no image"),
    ({"prompt": "a cat", "mode": "img2img", "init_image": "upload:init_image", **TINY}, 400, "no file was uploaded"),
]


@pytest.fixture
def guarded(make_server):
    server = make_server(shared=True, max_body_bytes=512 * 1024, max_upload_bytes=64 * 1024)
    client = server.client(server.add_user("ann", credits=10))
    job = wait_job(client, client.post("/api/jobs", json={"prompt": "a precious yellow star", **TINY}).json()["id"])
    image = job["images"][0]

    def snapshot():
        file = client.get(image["url"])
        return {
            "me": client.get("/api/me").json(),
            "images": client.get("/api/images").json(),
            "jobs": len(client.get("/api/jobs").json()),
            "file": hashlib.sha256(file.content).hexdigest() if file.status_code == 200 else None,
        }

    return server, client, snapshot


def _assert_error(response, status, words):
    assert response.status_code == status, (response.status_code, response.text)
    error = response.json()["error"]
    assert error["code"] and error["message"]
    assert words.lower() in error["message"].lower(), error


def test_each_bad_request_gets_its_4xx_and_harms_nothing(guarded):
    server, client, snapshot = guarded
    before = snapshot()
    for body, status, words in BAD_JSON_REQUESTS:
        _assert_error(client.post("/api/jobs", json=body), status, words)

    _assert_error(client.post("/api/jobs", content=b"{not json", headers={"content-type": "application/json"}), 400, "JSON")
    _assert_error(client.post("/api/jobs", content=b"[1, 2]", headers={"content-type": "application/json"}), 400, "object")
    _assert_error(client.post("/api/jobs", content=b"prompt=cat", headers={"content-type": "text/plain"}), 400, "json")
    # Body and upload limits.
    _assert_error(client.post("/api/jobs", json={"prompt": "a cat " * 200_000, **TINY}), 413, "limit")
    request = '{"prompt": "a cat", "mode": "img2img", "model": "tiny", "steps": 2}'
    noise = Image.effect_noise((256, 256), 64).convert("RGB")
    buf = io.BytesIO()
    noise.save(buf, format="PNG")
    assert len(buf.getvalue()) > 64 * 1024
    _assert_error(client.post("/api/jobs", data={"request": request},
                              files={"init_image": ("big.png", buf.getvalue(), "image/png")}), 413, "limit")
    big_b64 = base64.b64encode(buf.getvalue()).decode()
    _assert_error(client.post("/api/jobs", json={"prompt": "a cat", "mode": "img2img", "init_image": big_b64, **TINY}),
                  413, "limit")
    _assert_error(client.post("/api/jobs", data={"request": request},
                              files={"init_image": ("a.png", b"GIF89a not really", "image/png")}), 400, "could not be read")
    _assert_error(client.post("/api/jobs", data={"request": request},
                              files={"init_image": ("bomb.png", BOMB, "image/png")}), 400, "pixels")
    _assert_error(client.post("/api/jobs", data={"request": request},
                              files={"elsewhere": ("a.png", png(), "image/png")}), 400, "unexpected")
    # Other endpoints.
    _assert_error(client.post("/api/estimate", json={"prompt": "a cat", **TINY, "count": 9}), 422, "count")
    _assert_error(client.get("/api/images", params={"limit": 1000}), 422, "limit")
    _assert_error(client.get("/api/jobs/nope"), 404, "no job")
    _assert_error(client.post("/api/prompts", json={"name": ""}), 422, "name")

    assert snapshot() == before
    leftovers = list((server.settings.data_dir / "inputs").iterdir())
    assert leftovers == [], "refused uploads leave no files behind"
