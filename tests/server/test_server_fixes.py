"""Server fixes, each seen from a client: uploads keep their PNG text chunks;
keep_mask and control.image go through the same upload/reference guards as
the init image; hires fix is priced at its larger size; img2img results carry
their drift; POST /api/analyse; /api/models notices new models without
rescanning; style previews are served."""

from __future__ import annotations

import base64
import io
import json
import struct

import numpy as np
import pytest
from PIL import Image

from imagestudio.store.metadata import parse_parameters, read_parameters
from serverkit import TINY, start_server, wait_job

PROMPT = "a red circle on the left"


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def noise(seed: int = 0, size=(64, 64)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def half_mask(size=(64, 64)) -> Image.Image:
    mask = Image.new("L", size, 0)
    mask.paste(255, (0, 0, size[0] // 2, size[1]))  # white = the left half
    return mask


@pytest.fixture(scope="module")
def server(tmp_path_factory, server_models, server_engine):
    with start_server(tmp_path_factory.mktemp("fixes"), server_models, engine=server_engine,
                      catalog=server_engine.catalog) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    with server.client() as c:
        yield c


@pytest.fixture(scope="module")
def studio_png(client):
    """(image id, PNG bytes) of a txt2img result: it carries `parameters` and `imagestudio`."""
    job = wait_job(client, client.post("/api/jobs", json={"prompt": PROMPT, **TINY}).json()["id"])
    assert job["state"] == "succeeded", job
    image = job["images"][0]
    return image["id"], client.get(image["url"]).content


def error_message(response) -> str:
    body = response.json()
    assert "error" in body and body["error"]["message"], body
    return body["error"]["message"]


# --- 1. uploads keep their text chunks ------------------------------------------


def test_variation_of_an_uploaded_studio_png_reuses_its_prompt(client, studio_png):
    _, png = studio_png
    request = {"mode": "variation", "model": "tiny", "steps": 2, "variation_strength": 0.3}
    uploaded = client.post("/api/jobs", data={"request": json.dumps(request)},
                           files={"init_image": ("studio.png", png, "image/png")})
    assert uploaded.status_code == 202, uploaded.text
    by_base64 = client.post("/api/jobs", json={**request, "init_image": base64.b64encode(png).decode()})
    assert by_base64.status_code == 202, by_base64.text
    for response in (uploaded, by_base64):
        done = wait_job(client, response.json()["id"])
        assert done["state"] == "succeeded", done
        result = client.get(done["images"][0]["url"]).content
        assert parse_parameters(read_parameters(result))["prompt"] == PROMPT


def test_upscale_of_an_uploaded_png_keeps_its_settings(client, studio_png):
    _, png = studio_png
    original = parse_parameters(read_parameters(png))
    uploaded = client.post("/api/jobs", data={"request": json.dumps({"mode": "upscale", "upscale_factor": 2})},
                           files={"init_image": ("studio.png", png, "image/png")})
    assert uploaded.status_code == 202, uploaded.text
    done = wait_job(client, uploaded.json()["id"])
    assert done["state"] == "succeeded", done
    result = client.get(done["images"][0]["url"]).content
    assert Image.open(io.BytesIO(result)).size == (128, 128)
    fields = parse_parameters(read_parameters(result))
    assert fields["prompt"] == PROMPT and fields["Seed"] == original["Seed"]
    assert fields["Postprocess upscaler"] == "Lanczos"


def test_an_a1111_jpeg_keeps_its_exif_infotext(client):
    text = "a blue boat\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 5, Size: 64x64, Model: sd15"
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\0" + text.encode("utf-16-be")  # A1111's UserComment
    buf = io.BytesIO()
    noise(7).save(buf, format="JPEG", exif=exif.tobytes())
    response = client.post("/api/jobs", data={"request": json.dumps({"mode": "upscale", "upscale_factor": 2})},
                           files={"init_image": ("a1111.jpg", buf.getvalue(), "image/jpeg")})
    assert response.status_code == 202, response.text
    done = wait_job(client, response.json()["id"])
    assert done["state"] == "succeeded", done
    fields = parse_parameters(read_parameters(client.get(done["images"][0]["url"]).content))
    assert fields["prompt"] == "a blue boat" and fields["Seed"] == "5" and fields["Size"] == "128x128"


def test_a_cmyk_jpeg_upload_is_accepted(client):
    buf = io.BytesIO()
    noise(6).convert("CMYK").save(buf, format="JPEG", quality=95)
    response = client.post("/api/jobs", data={"request": json.dumps({"mode": "upscale", "upscale_factor": 2})},
                           files={"init_image": ("print.jpg", buf.getvalue(), "image/jpeg")})
    assert response.status_code == 202, response.text
    done = wait_job(client, response.json()["id"])
    assert done["state"] == "succeeded", done
    assert (done["images"][0]["width"], done["images"][0]["height"]) == (128, 128)


def test_a1111_extras_upscale_keeps_the_source_settings(client, studio_png):
    _, png = studio_png
    response = client.post("/sdapi/v1/extra-single-image", json={
        "image": base64.b64encode(png).decode(), "upscaler_1": "Lanczos", "upscaling_resize": 2})
    assert response.status_code == 200, response.text
    body = response.json()
    result = base64.b64decode(body["image"])
    fields = parse_parameters(read_parameters(result))
    assert fields["prompt"] == PROMPT and fields["Postprocess upscale by"] == "2.0"
    assert PROMPT in body["html_info"]


# --- 2. keep_mask and control.image: uploads, references and the path guard -----


def test_keep_mask_upload_keeps_pixels_and_reports_drift(client):
    init = noise(1)
    request = {"prompt": "a blue square", "mode": "img2img", "strength": 0.9, **TINY}
    response = client.post("/api/jobs", data={"request": json.dumps(request)},
                           files={"init_image": ("init.png", png_bytes(init), "image/png"),
                                  "keep_mask": ("keep.png", png_bytes(half_mask()), "image/png")})
    assert response.status_code == 202, response.text
    assert response.json()["request"]["keep_mask"] == "upload:keep_mask"
    done = wait_job(client, response.json()["id"])
    assert done["state"] == "succeeded", done
    out = np.asarray(Image.open(io.BytesIO(client.get(done["images"][0]["url"]).content)).convert("RGB"))
    src = np.asarray(init)
    assert np.array_equal(out[:, :32], src[:, :32]), "the kept half is bit-identical"
    assert not np.array_equal(out[:, 32:], src[:, 32:]), "the rest was repainted"
    # 4. drift: the JSON carries the figures the PNG's infotext has
    drift = done["images"][0]["drift"]
    assert drift is not None and 0 < drift["ssim"] < 1 and drift["kept_ssim"] > drift["ssim"]
    assert drift["kept_fraction"] == pytest.approx(0.5, abs=0.01)
    params = parse_parameters(done["images"][0]["parameters"])
    assert f"{drift['ssim']:.4f}" == params["Drift SSIM"]
    assert client.get(f"/api/images/{done['images'][0]['id']}").json()["drift"] == drift
    assert client.get(f"/api/images/{done['images'][0]['id']}/settings").json()["keep_mask"] == "upload:keep_mask"


def test_txt2img_results_have_no_drift(client, studio_png):
    image_id, _ = studio_png
    assert client.get(f"/api/images/{image_id}").json()["drift"] is None
    items = client.get("/api/images").json()["items"]
    assert all("drift" in item for item in items)


def test_keep_mask_by_stored_image_id(client, studio_png):
    image_id, _ = studio_png
    response = client.post("/api/jobs", json={"prompt": "a green star", "mode": "img2img", **TINY,
                                              "init_image": f"image:{image_id}", "keep_mask": f"image:{image_id}"})
    assert response.status_code == 202, response.text
    assert response.json()["request"]["keep_mask"] == f"image:{image_id}"
    assert wait_job(client, response.json()["id"])["state"] == "succeeded"


@pytest.mark.parametrize("where", ["init_image", "keep_mask", "control"])
@pytest.mark.parametrize("path_kind", ["existing", "missing", "missing-base64-length"])
def test_server_paths_are_refused_for_every_image_field(client, tmp_path, where, path_kind):
    target = tmp_path / "secret.png"
    if path_kind == "missing-base64-length":  # over 64 characters, a multiple of 4, like base64
        target = tmp_path / ("s" * (-len(str(tmp_path / "x.png")) % 4 + 64) + "x.png")
        assert len(str(target)) % 4 == 0 and len(str(target)) > 64
    if path_kind == "existing":
        noise(2).save(target)
    init = "data:image/png;base64," + base64.b64encode(png_bytes(noise(3))).decode()
    request = {"prompt": "a red house", "mode": "img2img", "init_image": init, **TINY}
    if where == "control":
        request["control"] = {"type": "canny", "image": str(target)}
    else:
        request[where] = str(target)
    for route, ok in (("/api/jobs", 202), ("/api/estimate", 200)):
        response = client.post(route, json=request)
        assert response.status_code == 400, (route, response.text)
        message = error_message(response)
        assert "does not read file paths" in message and str(target) not in message
        field = "control_image" if where == "control" else where
        assert message.startswith(field)


def test_control_image_upload_and_base64_never_show_server_paths(client):
    request = {"prompt": "a red square", "control": {"type": "canny", "weight": 0.5}, **TINY}
    edges = png_bytes(noise(4))
    uploaded = client.post("/api/jobs", data={"request": json.dumps(request)},
                           files={"control_image": ("edges.png", edges, "image/png")})
    assert uploaded.status_code == 202, uploaded.text
    control = uploaded.json()["request"]["control"]
    assert control["image"] == "upload:control_image" and control["weight"] == 0.5
    # no control object in the request: the upload alone makes one (canny)
    alone = client.post("/api/jobs", data={"request": json.dumps({"prompt": "a red square", **TINY})},
                        files={"control_image": ("edges.png", edges, "image/png")})
    assert alone.status_code == 202, alone.text
    assert alone.json()["request"]["control"]["type"] == "canny"
    inline = client.post("/api/jobs", json={**request, "control": {"type": "canny",
                                                                  "image": base64.b64encode(edges).decode()}})
    assert inline.status_code == 202, inline.text
    assert inline.json()["request"]["control"]["image"] == "upload:control_image", "no base64 kept in the job"
    for response in (uploaded, alone, inline):
        wait_job(client, response.json()["id"])  # (this models folder has no ControlNet: the job may fail)
    bad = client.post("/api/jobs", data={"request": json.dumps(request)},
                      files={"control_image": ("edges.png", b"not an image", "image/png")})
    assert bad.status_code == 400 and "control_image" in error_message(bad)
    stray = client.post("/api/jobs", data={"request": json.dumps(request)},
                        files={"controlnet": ("edges.png", edges, "image/png")})
    assert stray.status_code == 400 and "control_image" in error_message(stray)


@pytest.fixture(scope="module")
def control_client(tmp_path_factory):
    from imagestudio.engine import Catalog, Engine, PipelineCache
    from serverkit import make_models_dir
    from tiny import save_tiny_controlnet

    models = make_models_dir(tmp_path_factory.mktemp("control-models"), inpaint=False)
    save_tiny_controlnet(models)
    engine = Engine(Catalog(models, include_embedded=False), PipelineCache(max_models=1))
    with start_server(tmp_path_factory.mktemp("control-data"), models, engine=engine,
                      catalog=engine.catalog) as running:
        with running.client() as c:
            yield c


def test_control_image_upload_base64_and_stored_id_guide_the_image(control_client):
    client = control_client
    square = Image.new("RGB", (64, 64), (20, 20, 20))
    square.paste((230, 230, 230), (16, 16, 48, 48))
    request = {"prompt": "a red square", "seed": 21, **TINY, "control": {"type": "canny"}}

    def pixels(job):
        assert job["state"] == "succeeded", job
        return np.asarray(Image.open(io.BytesIO(client.get(job["images"][0]["url"]).content))).astype(int)

    uploaded = wait_job(client, client.post("/api/jobs", data={"request": json.dumps(request)},
                                            files={"control_image": ("sq.png", png_bytes(square), "image/png")}).json()["id"])
    assert "ControlNet" in uploaded["images"][0]["parameters"]
    inline = dict(request, control={"type": "canny", "image": base64.b64encode(png_bytes(square)).decode()})
    by_base64 = wait_job(client, client.post("/api/jobs", json=inline).json()["id"])
    plain = wait_job(client, client.post("/api/jobs", json={"prompt": "a red square", "seed": 21, **TINY}).json()["id"])
    assert np.abs(pixels(uploaded) - pixels(by_base64)).max() <= 2, "the same control, however it was sent"
    assert np.abs(pixels(uploaded) - pixels(plain)).mean() > 1, "the ControlNet had an effect"
    # a stored image as the control source
    source = wait_job(client, client.post("/api/jobs", json=inline).json()["id"])["images"][0]["id"]
    by_id = client.post("/api/jobs", json=dict(request, control={"type": "canny", "image": f"image:{source}"}))
    assert by_id.status_code == 202 and by_id.json()["request"]["control"]["image"] == f"image:{source}"
    assert wait_job(client, by_id.json()["id"])["state"] == "succeeded"


def test_openapi_documents_the_upload_fields(client):
    schema = client.get("/openapi.json").json()
    form = schema["paths"]["/api/jobs"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert {"request", "init_image", "mask", "keep_mask", "control_image"} <= set(form["properties"])
    assert schema["paths"]["/api/analyse"]["post"]


# --- 3. hires fix is priced at its larger size ----------------------------------


def test_hires_fix_costs_its_second_pass(make_server):
    server = make_server(shared=True)
    key = server.add_user("hal", credits=20)
    client = server.client(key)
    plain = {"prompt": "a red house", **TINY}
    hires = {**plain, "hires_scale": 2, "hires_steps": 1}
    base = client.post("/api/estimate", json=plain).json()["cost"]
    bigger = client.post("/api/estimate", json=hires).json()
    assert base == 1
    # the 64 px pass (1) plus the 128 px pass (4 native areas)
    assert bigger["cost"] == 5 > base
    job = client.post("/api/jobs", json=hires).json()
    assert job["cost"] == bigger["cost"]
    assert client.get("/api/me").json()["credits"] == 20 - bigger["cost"]
    done = wait_job(client, job["id"])
    assert done["state"] == "succeeded" and done["images"][0]["width"] == 128


def test_outpaint_costs_the_extended_canvas(make_server):
    server = make_server(shared=True)
    client = server.client(server.add_user("olga", credits=20))
    init = "data:image/png;base64," + base64.b64encode(png_bytes(noise(5))).decode()
    same = {"prompt": "the sea", "model": "tiny", "steps": 2, "init_image": init}
    img2img = client.post("/api/estimate", json={**same, "mode": "img2img"}).json()["cost"]
    # 64x64 extended by 64 px on every side: a 192x192 canvas, 9 native areas
    extended = client.post("/api/estimate", json={**same, "mode": "outpaint", "outpaint":
                                                  {"left": 64, "right": 64, "top": 64, "bottom": 64}})
    assert extended.status_code == 200, extended.text
    assert img2img == 1 and extended.json()["cost"] == 9


# --- 5. POST /api/analyse ----------------------------------------------------------


def test_analyse_a_studio_png_by_upload_id_and_base64(client, studio_png):
    image_id, png = studio_png
    answers = [
        client.post("/api/analyse", files={"image": ("studio.png", png, "image/png")}),
        client.post("/api/analyse", json={"image": f"image:{image_id}"}),
        client.post("/api/analyse", json={"image": image_id}),
        client.post("/api/analyse", json={"image": base64.b64encode(png).decode()}),
        client.post("/api/analyse", json={"image": "data:image/png;base64," + base64.b64encode(png).decode()}),
    ]
    for response in answers:
        assert response.status_code == 200, response.text
        body = response.json()
        # what the web page reads (imagestudio/web/js/reference.js)
        assert body["source"] == "parameters" and body["prompt"] == PROMPT
        assert body["model"] == "tiny" and body["negative_prompt"] == ""
        assert (body["width"], body["height"], body["aspect_ratio"]) == (64, 64, "1:1")
        assert body["suggested_size"] == [64, 64]
        assert body["request"]["prompt"] == PROMPT and body["fields"]["Steps"] == "2"


def test_analyse_without_settings_describes_the_image(client):
    response = client.post("/api/analyse", files={"image": ("plain.png", png_bytes(noise(5, (96, 64))), "image/png")})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["aspect_ratio"] == "3:2" and body["source"] in ("judge", "none")
    if body["source"] == "judge":
        assert body["prompt"] and isinstance(body["confidence"], float)


@pytest.mark.parametrize("send, status, words", [
    ({"files": {"image": ("x.png", b"this is not an image", "image/png")}}, 400, "could not be read"),
    ({"json": {"image": base64.b64encode(b"this is not an image").decode()}}, 400, "could not be read"),
    ({"json": {"image": ""}}, 400, "missing"),
    ({"json": {}}, 400, "missing"),
    ({"json": {"image": "/etc/hostname"}}, 400, "does not read file paths"),
    ({"json": {"image": "image:0123456789abcdef0123456789abcdef"}}, 404, "no image"),
    ({"files": {"picture": ("x.png", b"\x89PNG", "image/png")}}, 400, "'image'"),
    ({"content": b"[1, 2]", "headers": {"content-type": "application/json"}}, 400, "JSON object"),
])
def test_analyse_refuses_bad_input_with_clear_errors(client, send, status, words):
    response = client.post("/api/analyse", **send)
    assert response.status_code == status, response.text
    assert words in error_message(response)


def test_analyse_other_users_images_are_absent(make_server):
    server = make_server(shared=True)
    ann, bob = server.add_user("ann", credits=5), server.add_user("bob", credits=5)
    job = wait_job(server.client(ann), server.client(ann).post("/api/jobs", json={"prompt": PROMPT, **TINY}).json()["id"])
    theirs = server.client(bob).post("/api/analyse", json={"image": f"image:{job['images'][0]['id']}"})
    assert theirs.status_code == 404
    assert server.client().post("/api/analyse", json={"image": "x"}).status_code == 401


# --- 6. /api/models follows the models folder, scanning only on change -----------


def fake_checkpoint(path, prefix="model.diffusion_model."):
    header = json.dumps({f"{prefix}input_blocks.0.0.weight": {"dtype": "F16", "shape": [320, 4, 3, 3],
                                                              "data_offsets": [0, 0]}}).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(header)) + header)


def test_models_added_after_a_listing_appear_in_the_next_one(tmp_path, server_engine, monkeypatch):
    from imagestudio.engine import catalog as catalog_module
    from imagestudio.engine.catalog import Catalog

    models = tmp_path / "models"
    fake_checkpoint(models / "Stable-diffusion" / "first.safetensors")
    scans = []
    real_scan = catalog_module.scan_models
    monkeypatch.setattr(catalog_module, "scan_models", lambda root: scans.append(root) or real_scan(root))
    catalog = Catalog(models, include_embedded=False)
    with start_server(tmp_path / "data", models, engine=server_engine, catalog=catalog) as server:
        client = server.client()
        first = client.get("/api/models").json()
        assert [m["name"] for m in first] == ["first"] and len(first[0]["hash"]) == 10
        assert client.get("/api/models").json() == first
        assert len(scans) == 1, "an unchanged folder is not scanned again"
        fake_checkpoint(models / "Stable-diffusion" / "second.safetensors")
        fake_checkpoint(models / "checkpoints" / "third.safetensors")  # a new subfolder too
        names = [m["name"] for m in client.get("/api/models").json()]
        assert names == ["first", "second", "third"]
        (models / "Stable-diffusion" / "first.safetensors").unlink()
        assert [m["name"] for m in client.get("/api/models").json()] == ["second", "third"]


def test_a_diffusers_folder_copied_in_appears(tmp_path, server_models):
    import shutil

    from imagestudio.engine.catalog import Catalog

    models = tmp_path / "models"
    (models / "Stable-diffusion").mkdir(parents=True)
    catalog = Catalog(models, include_embedded=False)
    assert catalog.list() == []
    # The folder appears first, its model_index.json later (a copy in progress).
    target = models / "Stable-diffusion" / "tiny"
    shutil.copytree(server_models / "Stable-diffusion" / "tiny", target, ignore=shutil.ignore_patterns("model_index.json"))
    assert catalog.list() == []
    shutil.copy(server_models / "Stable-diffusion" / "tiny" / "model_index.json", target / "model_index.json")
    assert [m.name for m in catalog.list()] == ["tiny"]


# --- 7. style previews ------------------------------------------------------------


def test_every_style_preview_url_serves_a_png(client):
    styles = client.get("/api/styles").json()
    assert len(styles) >= 10
    for style in styles:
        assert style["preview_url"], style["name"]
        response = client.get(style["preview_url"])
        assert response.status_code == 200, (style["name"], response.text)
        assert response.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(response.content)).size[0] > 0
    assert client.get("/api/styles/no-such-style/preview").status_code == 404


def test_color_correction_is_refused_for_inpaint_with_a_message_and_no_job(client):
    """The native API: an inpaint asking for colour correction is a 422 that says
    why, and leaves no job behind; an img2img asking for it is taken and done."""
    init = "data:image/png;base64," + base64.b64encode(png_bytes(noise(5))).decode()
    before = len(client.get("/api/jobs").json())
    mask = "data:image/png;base64," + base64.b64encode(png_bytes(noise(6).convert("L"))).decode()
    refused = client.post("/api/jobs", json={"prompt": "a blue boat", "mode": "inpaint", "init_image": init,
                                             "mask": mask, "color_correction": True, **TINY})
    assert refused.status_code == 422, refused.text
    assert "color correction applies to img2img" in error_message(refused)
    assert len(client.get("/api/jobs").json()) == before
    taken = client.post("/api/jobs", json={"prompt": "a blue boat", "mode": "img2img", "init_image": init,
                                           "color_correction": True, **TINY})
    assert taken.status_code == 202, taken.text
    job = wait_job(client, taken.json()["id"])
    assert job["state"] == "succeeded" and job["request"]["color_correction"] is True
