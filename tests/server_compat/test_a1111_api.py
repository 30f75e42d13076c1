"""The AUTOMATIC1111 API, driven by the real `webuiapi` client against a real
server on a loopback port."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import webuiapi
from PIL import Image

SMALL = dict(width=64, height=64, steps=2, cfg_scale=7.0)


def test_txt2img_returns_seeded_images_with_info(api):
    result = api.txt2img(prompt="a red circle", negative_prompt="blurry", seed=123, batch_size=2, **SMALL)
    assert len(result.images) == 2
    assert all(im.size == (64, 64) for im in result.images)
    info = result.info
    assert info["all_seeds"] == [123, 124] and info["seed"] == 123
    assert info["sd_model_name"] == "tiny" and info["steps"] == 2 and info["sampler_name"] == "Euler a"
    assert info["prompt"] == "a red circle" and info["negative_prompt"] == "blurry"
    assert "Seed: 124" in info["infotexts"][1]
    assert result.parameters["prompt"] == "a red circle" and result.parameters["batch_size"] == 2
    # The PNG carries A1111's infotext, as A1111's own does.
    assert "Seed: 123" in result.images[0].info["parameters"]
    # Same seed, same pixels (to float rounding between batch sizes): the
    # request went through unchanged.
    again = api.txt2img(prompt="a red circle", negative_prompt="blurry", seed=124, **SMALL)
    diff = np.abs(np.asarray(again.image).astype(int) - np.asarray(result.images[1]).astype(int))
    assert diff.max() <= 2


def test_txt2img_hires_fix(api):
    pytest.importorskip("imagestudio.engine.upscale")
    result = api.txt2img(prompt="a house", seed=8, enable_hr=True, hr_scale=2, hr_upscaler=webuiapi.HiResUpscaler.Latent,
                         denoising_strength=0.5, hr_second_pass_steps=2, **SMALL)
    assert result.image.size == (128, 128)
    assert result.info["width"] == 128 and result.info["all_seeds"] == [8]


def test_extras_upscale(api):
    pytest.importorskip("imagestudio.engine.upscale")
    names = [u["name"] for u in api.get_upscalers()]
    assert "Lanczos" in names
    made = api.txt2img(prompt="a tree", seed=6, **SMALL)
    result = api.extra_single_image(made.image, upscaler_1="Lanczos", upscaling_resize=2)
    assert result.image.size == (128, 128)
    assert "Postprocess upscaler: Lanczos" in result.info
    with pytest.raises(RuntimeError) as info:
        api.extra_single_image(made.image, upscaler_1="Lanczos", gfpgan_visibility=1)
    assert info.value.args[0] == 400


def test_txt2img_with_a_controlnet_unit(api):
    square = Image.new("RGB", (64, 64), (20, 20, 20))
    square.paste((230, 230, 230), (16, 16, 48, 48))
    unit = webuiapi.ControlNetUnit(image=square, module="canny", model="tiny-canny [0123abcd]", weight=1.0)
    # alwayson_scripts passed explicitly: webuiapi's default dict is shared between calls
    guided = api.txt2img(prompt="a red square", seed=21, controlnet_units=[unit], alwayson_scripts={}, **SMALL)
    assert "Module: canny, Model: tiny-canny" in guided.info["infotexts"][0]
    plain = api.txt2img(prompt="a red square", seed=21, alwayson_scripts={}, **SMALL)
    diff = np.abs(np.asarray(guided.image).astype(int) - np.asarray(plain.image).astype(int))
    assert diff.mean() > 1, "the ControlNet had no effect"


def test_img2img_with_mask_keeps_unmasked_pixels(api):
    rng = np.random.default_rng(0)
    init = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))  # repaint the left half
    result = api.img2img(images=[init], mask_image=mask, prompt="a green tree", seed=5, denoising_strength=0.9,
                         mask_blur=2, inpainting_mask_invert=0, **SMALL)
    out = np.asarray(result.image.convert("RGB")).astype(int)
    src = np.asarray(init).astype(int)
    assert result.image.size == (64, 64)
    assert np.array_equal(out[:, 32:], src[:, 32:]), "pixels outside the mask changed"
    assert np.abs(out[:, :30] - src[:, :30]).mean() > 5, "the masked area was not repainted"
    assert result.info["all_seeds"] == [5] and "Mask blur: 2" in result.info["infotexts"][0]
    assert result.parameters["init_images"] is None  # not echoed back

    # inpainting_mask_invert repaints the other half instead.
    flipped = api.img2img(images=[init], mask_image=mask, prompt="a green tree", seed=5, denoising_strength=0.9,
                          mask_blur=0, inpainting_mask_invert=1, **SMALL)
    out = np.asarray(flipped.image.convert("RGB")).astype(int)
    assert np.array_equal(out[:, :32], src[:, :32])


def test_img2img_without_mask(api):
    init = Image.new("RGB", (64, 64), (200, 30, 30))
    result = api.img2img(images=[init], prompt="a red square", seed=1, denoising_strength=0.5, **SMALL)
    assert result.image.size == (64, 64) and "Denoising strength: 0.5" in result.info["infotexts"][0]


def test_img2img_color_correction_from_override_settings_and_options(api):
    """A1111's "Apply color correction to img2img results to match original colors"
    (the img2img_color_correction setting), per call or stored with POST /options."""
    pixels = np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    pixels[:, :, 2] //= 4  # a warm picture (little blue): its palette is easy to tell from the output's
    init = Image.fromarray(pixels)
    plain = api.img2img(images=[init], prompt="a red square", seed=1, denoising_strength=0.7, **SMALL)
    fixed = api.img2img(images=[init], prompt="a red square", seed=1, denoising_strength=0.7,
                        override_settings={"img2img_color_correction": True}, **SMALL)

    def sorted_channels(image):  # the colour distribution, whatever the layout
        return np.sort(np.asarray(image.convert("RGB")).reshape(-1, 3).astype(int), axis=0)

    target = sorted_channels(init)
    assert np.abs(sorted_channels(fixed.image) - target).mean() < np.abs(sorted_channels(plain.image) - target).mean() / 3
    assert "Color correction: yes" in fixed.info["infotexts"][0]
    assert "Color correction" not in plain.info["infotexts"][0]
    try:
        api.set_options({"img2img_color_correction": True})
        assert api.get_options()["img2img_color_correction"] is True
        stored = api.img2img(images=[init], prompt="a red square", seed=1, denoising_strength=0.7, **SMALL)
        assert np.array_equal(np.asarray(stored.image), np.asarray(fixed.image))
        # inpainting keeps its new colours (and the unmasked pixels) instead
        mask = Image.new("L", (64, 64), 0)
        mask.paste(255, (0, 0, 32, 64))
        painted = api.img2img(images=[init], mask_image=mask, prompt="a green tree", seed=5,
                              denoising_strength=0.9, mask_blur=0, **SMALL)
        assert "Color correction" not in painted.info["infotexts"][0]
        # the call's override_settings win over the stored option
        off = api.img2img(images=[init], prompt="a red square", seed=1, denoising_strength=0.7,
                          override_settings={"img2img_color_correction": False}, **SMALL)
        assert np.array_equal(np.asarray(off.image), np.asarray(plain.image))
    finally:
        api.set_options({"img2img_color_correction": False})


def test_models_options_and_switching(api):
    models = api.get_sd_models()
    names = {m["model_name"] for m in models}
    assert {"tiny", "tiny-inpaint"} <= names
    titles = api.util_get_model_names()
    assert all(t.endswith("]") for t in titles)
    for m in models:  # sha256 of the weights; the title's short hash is its first 10 digits
        assert len(m["sha256"]) == 64 and m["title"].endswith(f"[{m['sha256'][:10]}]")
    tiny = next(m for m in models if m["model_name"] == "tiny")
    unet = sorted((Path(tiny["filename"]) / "unet").glob("*.safetensors"))[0]
    assert tiny["sha256"] == hashlib.sha256(unet.read_bytes()).hexdigest()
    inpaint_title = next(m["title"] for m in models if m["model_name"] == "tiny-inpaint")

    api.util_set_model(inpaint_title)  # POST /options {"sd_model_checkpoint": title}
    assert api.util_get_current_model() == inpaint_title
    init = Image.new("RGB", (64, 64), (10, 10, 200))
    mask = Image.new("L", (64, 64), 255)
    result = api.img2img(images=[init], mask_image=mask, prompt="a boat", seed=2, **SMALL)
    assert result.info["sd_model_name"] == "tiny-inpaint"

    # override_settings wins over the selected model for one call
    result = api.img2img(images=[init], mask_image=mask, prompt="a boat", seed=2,
                         override_settings={"sd_model_checkpoint": "tiny"}, **SMALL)
    assert result.info["sd_model_name"] == "tiny"

    api.set_options({"sd_model_checkpoint": "tiny"})
    assert api.get_options()["sd_model_checkpoint"].startswith("tiny [")


def test_samplers_styles_png_info(api):
    samplers = api.util_get_sampler_names()
    assert {"Euler a", "DPM++ 2M", "DDIM", "UniPC"} <= set(samplers)
    styles = api.get_prompt_styles()
    assert styles and all({"name", "prompt", "negative_prompt"} <= set(s) for s in styles)

    made = api.txt2img(prompt="a blue star", seed=77, sampler_name="DPM++ 2M", **SMALL)
    info = api.png_info(made.image)
    assert "a blue star" in info.info and "Seed: 77" in info.info
    assert info.json["parameters"]["Seed"] == "77" and info.json["parameters"]["Sampler"] == "DPM++ 2M"
    assert info.json["parameters"]["Size-1"] == "64"

    styled = api.txt2img(prompt="a cat", styles=["Comic"], seed=4, **SMALL)
    assert styled.info["styles"] == ["Comic"] and "Style: Comic" in styled.info["infotexts"][0]
    assert styled.info["prompt"] != "a cat" and "a cat" in styled.info["prompt"]


def test_progress_and_interrupt(api):
    idle = api.get_progress()
    assert idle["progress"] == 0 and idle["state"]["job_count"] == 0

    outcome = {}
    worker = threading.Thread(target=lambda: outcome.setdefault(
        "result", api.txt2img(prompt="a long job", seed=9, batch_size=4, width=64, height=64, steps=150)))
    worker.start()
    seen = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        progress = api.get_progress()
        if progress["state"]["sampling_step"] >= 1:
            seen = progress
            break
        time.sleep(0.02)
    assert seen is not None, "progress never showed the running job"
    assert seen["state"]["sampling_steps"] == 150 and 0 < seen["progress"] < 1
    assert seen["state"]["job_count"] >= 1 and seen["eta_relative"] >= 0
    assert api.interrupt() == {}
    worker.join(timeout=60)
    assert not worker.is_alive()
    result = outcome["result"]
    assert result.images == []  # interrupted: no finished images
    assert api.get_progress()["state"]["job_count"] == 0


def test_bad_requests_are_refused(api):
    with pytest.raises(RuntimeError) as info:
        api.txt2img(prompt="x", batch_size=5, **SMALL)
    assert info.value.args[0] == 400 and "at most 4" in info.value.args[1]
    with pytest.raises(RuntimeError) as info:
        api.txt2img(prompt="x", sampler_name="Nope", **SMALL)
    assert info.value.args[0] == 400 and "unknown sampler" in info.value.args[1]
    with pytest.raises(RuntimeError) as info:
        api.txt2img(prompt="x", override_settings={"sd_model_checkpoint": "missing"}, **SMALL)
    assert info.value.args[0] == 404
    response = api.session.post(f"{api.baseurl}/txt2img", json={"prompt": "x", "seed": "not a number"})
    assert response.status_code == 422
    response = api.session.post(f"{api.baseurl}/img2img", json={"prompt": "x", "init_images": ["bm90IGFuIGltYWdl"]})
    assert response.status_code == 400 and "could not be read as an image" in response.json()["detail"]


def test_shared_mode_needs_a_key(shared_server):
    port = int(shared_server.url.rsplit(":", 1)[1])
    key = shared_server.add_user("a1111-user", credits=10)
    anonymous = webuiapi.WebUIApi(host="127.0.0.1", port=port)
    with pytest.raises(RuntimeError) as info:
        anonymous.txt2img(prompt="x", **SMALL)
    assert info.value.args[0] == 401
    # webuiapi sends HTTP Basic; the key is the password
    api = webuiapi.WebUIApi(host="127.0.0.1", port=port, username="a1111-user", password=key)
    result = api.txt2img(prompt="a cat", seed=3, **SMALL)
    assert result.image.size == (64, 64)
    with pytest.raises(RuntimeError) as info:
        api.txt2img(prompt="a cat", batch_size=4, width=128, height=128, steps=2)
    assert info.value.args[0] == 402 and "credits" in info.value.args[1]
