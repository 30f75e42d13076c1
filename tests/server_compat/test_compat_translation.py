"""The pure translation layer: A1111 and OpenAI payloads -> GenerationRequest,
job results -> their response shapes. No server, no model."""

import base64
import io
import json
from types import SimpleNamespace

import pytest
from PIL import Image

from imagestudio.errors import ModelNotFound
from imagestudio.request import Mode
from imagestudio.server.compat import a1111_models as a1111
from imagestudio.server.compat import openai_models as oai
from imagestudio.server.compat.common import FieldError
from imagestudio.server.compat.images import ImageTooLarge
from imagestudio.store.metadata import png_bytes


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def b64(data: bytes, uri: bool = False) -> str:
    text = base64.b64encode(data).decode()
    return "data:image/png;base64," + text if uri else text


def decode(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


# --- A1111 -> request -------------------------------------------------------


def test_txt2img_payload_maps_every_field():
    payload = a1111.parse_payload(a1111.Txt2ImgPayload, {
        "prompt": "a red circle", "negative_prompt": "blurry", "styles": ["Comic"],
        "seed": 42, "subseed": 7, "subseed_strength": 0.3, "sampler_name": "DPM++ 2M",
        "scheduler": "Karras", "batch_size": 2, "n_iter": 2, "steps": 3, "cfg_scale": 5.5,
        "width": 100, "height": 64, "override_settings": {"sd_model_checkpoint": "tiny [0123456789]"},
        "restore_faces": False, "alwayson_scripts": {},  # extras are accepted
    })
    req = a1111.txt2img_request(payload, default_model="other").request
    assert req.mode is Mode.txt2img
    assert (req.prompt, req.negative_prompt, req.style) == ("a red circle", "blurry", "Comic")
    assert (req.seed, req.variation_seed, req.variation_strength) == (42, 7, 0.3)
    assert req.sampler == "DPM++ 2M Karras"
    assert req.count == 4 and req.steps == 3 and req.guidance == 5.5
    assert (req.width, req.height) == (96, 64)  # rounded down to the latent grid
    assert req.model == "tiny"  # override beats the options' default, title -> name


def test_txt2img_defaults_use_the_selected_checkpoint_and_model_defaults():
    req = a1111.txt2img_request(a1111.Txt2ImgPayload(prompt="x"), default_model="tiny [abc]").request
    assert req.model == "tiny" and req.steps is None and req.guidance is None and req.sampler is None
    assert req.variation_seed is None and req.seed == -1


def test_hires_fix_maps_to_our_hires_fields():
    body = {"prompt": "x", "width": 64, "height": 64, "enable_hr": True, "hr_scale": 2, "denoising_strength": 0.4,
            "hr_second_pass_steps": 3, "hr_upscaler": "Latent (antialiased)",
            "alwayson_scripts": {"ControlNet": {"args": []}, "ADetailer": {"args": [False]}}}  # "off" is fine
    req = a1111.txt2img_request(a1111.parse_payload(a1111.Txt2ImgPayload, body)).request
    assert (req.hires_scale, req.hires_strength, req.hires_steps, req.upscaler) == (2, 0.4, 3, "Lanczos")
    body.update(hr_resize_x=192, hr_resize_y=128, hr_upscaler="Nearest", hr_second_pass_steps=0)
    req = a1111.txt2img_request(a1111.parse_payload(a1111.Txt2ImgPayload, body)).request
    assert (req.hires_scale, req.hires_steps, req.upscaler) == (3, None, "Nearest")
    plain = a1111.txt2img_request(a1111.Txt2ImgPayload(prompt="x", denoising_strength=0.7)).request
    assert plain.hires_scale is None


def test_sampler_index_and_aliases():
    assert a1111.sampler_for(a1111.Txt2ImgPayload(sampler_index="euler_a")) == "Euler a"
    assert a1111.sampler_for(a1111.Txt2ImgPayload(sampler_name="Euler a", scheduler="automatic")) == "Euler a"


@pytest.mark.parametrize("body, param", [
    ({"prompt": "x", "batch_size": 3, "n_iter": 2}, "batch_size"),
    ({"prompt": "x", "sampler_name": "Nope"}, None),
    ({"prompt": "x", "styles": ["A", "B"]}, "styles"),
    ({"prompt": "x", "enable_hr": True, "hr_scale": 5}, "hr_scale"),
    ({"prompt": "x", "alwayson_scripts": {"roop": {"args": [True, "face.png"]}}}, "alwayson_scripts"),
    ({"prompt": "x", "script_name": "x/y/z plot"}, "script_name"),
    ({"prompt": "", "width": 64, "height": 64}, "prompt"),
    ({"prompt": "x", "steps": 0}, "steps"),
    ({"prompt": "x", "seed": "abc"}, "seed"),
])
def test_txt2img_bad_input_is_a_request_error(body, param):
    with pytest.raises(Exception) as info:
        a1111.txt2img_request(a1111.parse_payload(a1111.Txt2ImgPayload, body))
    assert getattr(info.value, "http_status", None) == (422 if param in ("seed", "alwayson_scripts") else 400)
    if param:
        assert info.value.param == param


def test_img2img_with_mask_becomes_inpaint_with_our_mask_convention():
    init = Image.new("RGB", (64, 64), (10, 200, 10))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))  # left half white = repaint
    payload = a1111.Img2ImgPayload(init_images=[b64(png(init), uri=True)], mask=b64(png(mask)),
                                   prompt="a cat", denoising_strength=0.5, mask_blur=2,
                                   width=64, height=64)
    out = a1111.img2img_request(payload)
    req = out.request
    assert req.mode is Mode.inpaint and req.strength == 0.5 and req.mask_blur == 2
    assert req.init_image == "input:init_image" and req.mask == "input:mask"
    ours = decode(out.inputs["mask"])
    assert ours.mode == "L" and ours.getpixel((5, 5)) == 255 and ours.getpixel((60, 5)) == 0
    assert decode(out.inputs["init_image"]).getpixel((1, 1)) == (10, 200, 10)

    inverted = a1111.img2img_request(payload.model_copy(update={"inpainting_mask_invert": 1}))
    assert decode(inverted.inputs["mask"]).getpixel((5, 5)) == 0


def test_img2img_rgba_mask_uses_alpha_opaque_means_repaint():
    init = Image.new("RGB", (64, 64), "white")
    mask = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    mask.paste((0, 0, 0, 255), (0, 0, 16, 16))
    out = a1111.img2img_request(a1111.Img2ImgPayload(init_images=[b64(png(init))], mask=b64(png(mask)), prompt="x",
                                                     width=64, height=64))
    ours = decode(out.inputs["mask"])
    assert ours.getpixel((2, 2)) == 255 and ours.getpixel((40, 40)) == 0


def test_img2img_without_mask_is_img2img():
    init = Image.new("RGB", (64, 64))
    out = a1111.img2img_request(a1111.Img2ImgPayload(init_images=[b64(png(init))], prompt="x", width=64, height=64))
    assert out.request.mode is Mode.img2img and out.request.strength == 0.75 and "mask" not in out.inputs


@pytest.mark.parametrize("payload, status", [
    (a1111.Img2ImgPayload(prompt="x"), 400),
    (a1111.Img2ImgPayload(prompt="x", init_images=["bm90IGFuIGltYWdl"]), 400),
    (a1111.Img2ImgPayload(prompt="x", init_images=["A" * (30 * 1024 * 1024)]), 413),
])
def test_img2img_bad_images(payload, status):
    with pytest.raises(Exception) as info:
        a1111.img2img_request(payload)
    assert info.value.http_status == status


# --- A1111 responses ---------------------------------------------------------


def _image_view(seed, infotext):
    return SimpleNamespace(id="i", seed=seed, width=64, height=64, parameters=infotext, path="", url="")


def test_generation_response_shape_and_info():
    infotext = ("a red circle\nNegative prompt: blurry\nSteps: 3, Sampler: Euler a, CFG scale: 7.0, "
                "Seed: 11, Size: 64x64, Model hash: abcdef0123, Model: tiny")
    payload = a1111.Txt2ImgPayload(prompt="a red circle", width=64, height=64)
    images = [_image_view(11, infotext), _image_view(12, infotext.replace("Seed: 11", "Seed: 12"))]
    body = a1111.generation_response(payload, images, [b"one", b"two"])
    assert [base64.b64decode(i) for i in body["images"]] == [b"one", b"two"]
    assert body["parameters"]["prompt"] == "a red circle"
    info = json.loads(body["info"])
    assert info["seed"] == 11 and info["all_seeds"] == [11, 12]
    assert info["sd_model_name"] == "tiny" and info["sd_model_hash"] == "abcdef0123"
    assert info["steps"] == 3 and info["sampler_name"] == "Euler a" and info["cfg_scale"] == 7.0
    assert info["infotexts"][1].endswith("Model: tiny") and "Seed: 12" in info["infotexts"][1]
    assert (info["width"], info["height"]) == (64, 64)

    quiet = a1111.generation_response(payload.model_copy(update={"send_images": False}), images, [b"x", b"y"])
    assert quiet["images"] == []


def test_echo_parameters_drops_input_images():
    payload = a1111.Img2ImgPayload(init_images=["abc"], mask="def", prompt="x")
    echoed = a1111.echo_parameters(payload)
    assert echoed["init_images"] is None and echoed["mask"] is None and echoed["prompt"] == "x"


def test_progress_idle_and_running():
    idle = a1111.progress_response(None)
    assert idle["progress"] == 0 and idle["state"]["job_count"] == 0 and idle["current_image"] is None
    job = SimpleNamespace(id="j1", state="running", step=3, total=4, eta_seconds=1.5, preview_png=b"\x89PNG")
    running = a1111.progress_response(job, queued=2)
    assert running["progress"] == 0.75 and running["eta_relative"] == 1.5
    assert running["state"]["sampling_step"] == 3 and running["state"]["sampling_steps"] == 4
    assert running["state"]["job_count"] == 2
    assert base64.b64decode(running["current_image"]) == b"\x89PNG"


def test_model_sampler_style_items():
    info = SimpleNamespace(name="tiny", hash="0123456789", sha256="0123456789" + "ab" * 27, path="/m/tiny")
    item = a1111.sd_model_item(info)
    assert item["title"] == "tiny [0123456789]" and item["model_name"] == "tiny" and item["filename"] == "/m/tiny"
    assert item["sha256"] == info.sha256
    assert a1111.checkpoint_name(item["title"]) == "tiny"
    samplers = a1111.sampler_items(["Euler a", "DPM++ 2M Karras"])
    assert samplers[0] == {"name": "Euler a", "aliases": ["k_euler_a", "k_euler_ancestral"], "options": {}}
    assert samplers[1]["options"] == {"scheduler": "karras"}
    style = SimpleNamespace(name="Comic", positive="{prompt}, comic", negative="photo")
    assert a1111.style_items([style]) == [{"name": "Comic", "prompt": "{prompt}, comic", "negative_prompt": "photo"}]
    options = a1111.options_response(info, {"samples_format": "png", "foo": 1})
    assert options["sd_model_checkpoint"] == "tiny [0123456789]" and options["foo"] == 1


def test_png_info_parses_our_infotext():
    text = "a cat\nNegative prompt: dog\nSteps: 3, Sampler: Euler a, CFG scale: 7, Seed: 5, Size: 64x48, Model: tiny"
    body = a1111.png_info_response(text, {"parameters": text, "imagestudio": "{}"})
    assert body["info"] == text and body["items"] == {"imagestudio": "{}"}
    p = body["parameters"]
    assert p["Prompt"] == "a cat" and p["Negative prompt"] == "dog" and p["Seed"] == "5"
    assert (p["Size-1"], p["Size-2"]) == ("64", "48")
    assert a1111.png_info_response(None, {}) == {"info": "", "items": {}, "parameters": {}}


# --- OpenAI -> request --------------------------------------------------------


def test_generations_body():
    body = oai.parse_generations({"prompt": "a blue square", "n": 2, "size": "64x128", "model": "dall-e-3",
                                  "quality": "hd", "style": "vivid"})
    req = oai.generation_request(body).request
    assert (req.prompt, req.count, req.width, req.height, req.model) == ("a blue square", 2, 64, 128, None)
    assert oai.generation_request(oai.parse_generations({"prompt": "x", "model": "tiny", "size": "auto"})).request.model == "tiny"
    assert oai.response_format(None, "dall-e-2") == "url" and oai.response_format(None, None) == "b64_json"


@pytest.mark.parametrize("body, param", [
    ({"prompt": "x", "n": 5}, "n"),
    ({"prompt": "x", "n": 0}, "n"),
    ({"prompt": "x", "size": "big"}, "size"),
    ({"prompt": "x", "size": "65x64"}, "size"),
    ({"prompt": ""}, "prompt"),
    ({"n": 1}, "prompt"),
    ({"prompt": "x" * 5000}, "prompt"),
    ({"prompt": "x", "stream": True}, "stream"),
    ({"prompt": "x", "output_format": "webp"}, "output_format"),
])
def test_generations_bad_input_names_the_param(body, param):
    with pytest.raises(FieldError) as info:
        oai.generation_request(oai.parse_generations(body))
    assert info.value.param == param
    status, err = oai.error_for(info.value)
    assert status == 400 and err["error"]["param"] == param and err["error"]["type"] == "invalid_request_error"


def test_edit_transparent_mask_pixels_become_white():
    image = Image.new("RGB", (64, 64), (0, 0, 255))
    mask = Image.new("RGBA", (64, 64), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (32, 0, 64, 64))  # right half transparent = edit
    out = oai.edit_request(png(image), png(mask), "a sun", n=2, size="64x64")
    assert out.request.mode is Mode.inpaint and out.request.count == 2 and out.request.strength == 1.0
    ours = decode(out.inputs["mask"])
    assert ours.getpixel((40, 10)) == 255 and ours.getpixel((10, 10)) == 0


def test_edit_without_mask_uses_the_image_alpha():
    image = Image.new("RGBA", (64, 64), (255, 0, 0, 255))
    image.paste((0, 0, 0, 0), (0, 0, 16, 16))
    out = oai.edit_request(png(image), None, "x")
    assert decode(out.inputs["mask"]).getpixel((1, 1)) == 255
    assert decode(out.inputs["init_image"]).mode == "RGB"


@pytest.mark.parametrize("mask_size, alpha, message", [
    ((32, 32), 0, "same size"),
    ((64, 64), 255, "no transparent"),
])
def test_edit_bad_masks(mask_size, alpha, message):
    image = Image.new("RGB", (64, 64))
    with pytest.raises(FieldError, match=message) as info:
        oai.edit_request(png(image), png(Image.new("RGBA", mask_size, (0, 0, 0, alpha))), "x")
    assert info.value.param == "mask"
    with pytest.raises(FieldError, match="no transparent area"):
        oai.edit_request(png(image), None, "x")


def test_variation_keeps_the_original_bytes_for_their_metadata():
    data = png_bytes(Image.new("RGB", (64, 64)), "a red circle\nSteps: 3, Sampler: Euler a, Seed: 1")
    out = oai.variation_request(data, n=3)
    assert out.request.mode is Mode.variation and out.request.count == 3 and out.inputs["init_image"] == data
    assert out.request.prompt == "a red circle"  # reused from the image's infotext
    assert oai.variation_request(png(Image.new("RGB", (64, 64)))).request.prompt == ""
    with pytest.raises(Exception) as info:
        oai.variation_request(b"not an image")
    assert info.value.http_status == 400


def test_openai_items_and_errors():
    assert oai.image_item("b64_json", b64="AAA", prompt="x", final_prompt="x") == {"b64_json": "AAA"}
    assert oai.image_item("url", url="http://h/a", prompt="x", final_prompt="x, comic") == {
        "url": "http://h/a", "revised_prompt": "x, comic"}
    body = oai.images_response([{"b64_json": "A"}], created=5)
    assert body == {"created": 5, "data": [{"b64_json": "A"}]}
    status, err = oai.error_for(ModelNotFound("unknown model 'x'"))
    assert status == 404 and err["error"]["code"] == "model_not_found"
    status, err = oai.error_for(ImageTooLarge("big"))
    assert status == 413
    status, err = oai.error_for(RuntimeError("secret detail"))
    assert status == 500 and "secret" not in err["error"]["message"] and err["error"]["type"] == "server_error"
    assert oai.error_body("no credits", 402)["error"]["type"] == "insufficient_quota"


def test_decompression_bombs_and_non_images_are_refused():
    from imagestudio.server.compat.images import open_image

    bomb = png(Image.new("L", (5000, 5000)))  # small file, 25 M pixels
    assert len(bomb) < 1024 * 1024
    with pytest.raises(Exception, match="pixels") as info:
        open_image(bomb)
    assert info.value.http_status == 400
    with pytest.raises(Exception, match="could not be read") as info:
        oai.edit_request(b"GIF89a-truncated", None, "x")
    assert info.value.http_status == 400


def test_extras_payload_to_upscale_request():
    data = png(Image.new("RGB", (64, 32)))
    out = a1111.extras_request(a1111.ExtrasPayload(image=b64(data, uri=True), upscaling_resize=3, upscaler_1="None"))
    req = out.request
    assert req.mode is Mode.upscale and req.upscale_factor == 3 and req.upscaler == "Lanczos"
    assert out.inputs["init_image"] == data
    fit = a1111.extras_request(a1111.ExtrasPayload(image=b64(data), resize_mode=1, upscaling_resize_w=128,
                                                   upscaling_resize_h=128, upscaler_1="Nearest")).request
    assert fit.upscale_factor == 4 and fit.upscaler == "Nearest"
    with pytest.raises(FieldError):
        a1111.extras_request(a1111.ExtrasPayload(image=b64(data), codeformer_visibility=0.5))
    body = a1111.extras_response(b"png", "a <cat>\nSteps: 2")
    assert body["html_info"] == "<p>a &lt;cat&gt;\nSteps: 2</p>" and base64.b64decode(body["image"]) == b"png"


def test_controlnet_unit_becomes_control():
    edges = b64(png(Image.new("RGB", (64, 64), "white")))
    unit = {"image": edges, "module": "canny", "model": "control_v11p_sd15_canny [d14c016b]", "weight": 0.8,
            "guidance_start": 0.1, "guidance_end": 0.9, "enabled": True}
    body = {"prompt": "x", "width": 64, "height": 64, "alwayson_scripts": {"ControlNet": {"args": [unit]}}}
    control = a1111.txt2img_request(a1111.parse_payload(a1111.Txt2ImgPayload, body)).request.control
    assert (control.type, control.model, control.weight, control.start, control.end, control.preprocess) == (
        "canny", "control_v11p_sd15_canny", 0.8, 0.1, 0.9, True)
    assert control.image.startswith("data:image/png;base64,")
    unit.update(module="none", model="my_scribble_net")
    control = a1111.txt2img_request(a1111.parse_payload(a1111.Txt2ImgPayload, body)).request.control
    assert (control.type, control.preprocess) == ("scribble", False)
    unit.update(module="openpose")
    with pytest.raises(FieldError, match="openpose") as info:
        a1111.txt2img_request(a1111.parse_payload(a1111.Txt2ImgPayload, body))
    assert info.value.http_status == 422
    unit.update(enabled=False)  # a disabled unit is no control
    assert a1111.txt2img_request(a1111.parse_payload(a1111.Txt2ImgPayload, body)).request.control is None


def test_openai_studio_extensions():
    body = oai.parse_generations({"prompt": "a cat", "style": "Comic", "seed": 5, "steps": 3,
                                  "negative_prompt": "dog", "sampler": "DDIM", "quality": "hd"})
    req = oai.generation_request(body).request
    assert (req.style, req.seed, req.steps, req.negative_prompt, req.sampler) == ("Comic", 5, 3, "dog", "DDIM")
    assert oai.generation_request(oai.parse_generations({"prompt": "x", "style": "vivid"})).request.style is None
    with pytest.raises(FieldError) as info:
        oai.generation_request(oai.parse_generations({"prompt": "x", "seed": -5}))
    assert info.value.param == "seed"
