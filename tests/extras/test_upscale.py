"""Upscaling: the studio's own network beats Lanczos on a held-out photo, runs
tiled within a stated memory bound, equals its untiled result; upscale mode
keeps the source's settings; hires fix returns the larger size."""

import numpy as np
import pytest
import torch
from PIL import Image

from imagestudio.engine.sr_train import photo, psnr, shrink
from imagestudio.engine.upscale import OVERLAP, TILE, load_studio, run_tiled, upscale
from imagestudio.request import GenerationRequest
from imagestudio.store.metadata import parse_parameters


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_studio_upscaler_beats_lanczos_on_a_held_out_photo():
    truth = photo("coffee")  # never seen in training
    for scale in (2, 4):
        small = shrink(truth, scale)
        size = (small.width * scale, small.height * scale)
        target = np.asarray(truth.crop((0, 0, *size)))
        lanczos = psnr(np.asarray(small.resize(size, Image.LANCZOS)), target, scale)
        studio = psnr(np.asarray(upscale(small, scale, "Studio")), target, scale)
        assert studio > lanczos + 0.2, (scale, studio, lanczos)


def test_4x_upscale_of_512_runs_tiled_within_the_memory_bound():
    """Every tensor the network makes stays under 64 channels x (tile + 2 *
    overlap)^2 floats: 1.33 M floats (5.3 MB) for tile 128 / overlap 8, where
    an untiled 512x512 pass would need 64 x 512^2 = 16.8 M (67 MB) per layer.
    The uint8 output (2048 x 2048 x 3 = 12.6 MB) is the only full-size array."""
    net = load_studio(4)
    largest = []
    hooks = [m.register_forward_hook(lambda mod, args, out: largest.append(out.numel())) for m in net.modules()]
    try:
        source = photo("astronaut").resize((512, 512))
        big = upscale(source, 4, "Studio")
    finally:
        for h in hooks:
            h.remove()
    bound = 64 * (TILE + 2 * OVERLAP) ** 2
    assert big.size == (2048, 2048)
    assert max(largest) <= bound == 1_327_104
    assert len(largest) > 16 * len(list(net.modules())) - 1, "16 tiles were run"


def test_tiling_does_not_change_the_result():
    image = photo("chelsea").resize((200, 150))
    net = load_studio(2)
    tiled = np.asarray(run_tiled(net, image, 2, tile=48, overlap=8), np.int16)
    whole = np.asarray(run_tiled(net, image, 2, tile=1024, overlap=0), np.int16)
    assert np.abs(tiled - whole).max() <= 1  # float summation order only


def test_upscale_mode_keeps_the_settings_of_a_studio_image(tiny_engine, tmp_path):
    from imagestudio.engine import request_json
    from imagestudio.store.metadata import save_png

    made = tiny_engine.generate(GenerationRequest(prompt="a blue boat", model="tiny", width=64, height=64, steps=2,
                                                  seed=3))
    source = save_png(made.images[0].image, tmp_path / "boat.png", made.images[0].parameters,
                      request_json(made.request, 0))
    result = tiny_engine.generate(GenerationRequest(mode="upscale", init_image=str(source), upscale_factor=3,
                                                    upscaler="studio"))
    (img,) = result.images
    assert img.image.size == (192, 192)
    params = parse_parameters(img.parameters)
    assert params["prompt"] == "a blue boat" and params["Seed"] == "3"
    assert params["Postprocess upscale by"] == "3.0" and params["Postprocess upscaler"] == "Studio"


def test_hires_fix_returns_the_larger_size(tiny_engine):
    req = dict(prompt="a green tree", model="tiny", width=64, height=64, steps=3, seed=5)
    base = tiny_engine.generate(GenerationRequest(**req))
    hires = tiny_engine.generate(GenerationRequest(**req, hires_scale=2, hires_strength=0.5, hires_steps=4,
                                                   upscaler="Studio"))
    assert base.images[0].image.size == (64, 64)
    assert hires.images[0].image.size == (128, 128)
    params = parse_parameters(hires.images[0].parameters)
    assert params["Size"] == "64x64" and params["Hires upscale"] == "2.0" and params["Hires steps"] == "4"
    assert params["Hires upscaler"] == "Studio" and params["Denoising strength"] == "0.5"
    again = tiny_engine.generate(GenerationRequest(**req, hires_scale=2, hires_strength=0.5, hires_steps=4,
                                                   upscaler="Studio"))
    assert np.array_equal(np.asarray(hires.images[0].image), np.asarray(again.images[0].image))


def test_upscaler_errors_are_named(tiny_engine, tmp_path):
    from imagestudio.engine import Catalog, Engine
    from imagestudio.errors import ModelLoadError, RequestError

    with pytest.raises(RequestError, match="unknown upscaler 'Bogus'"):
        tiny_engine.prepare(GenerationRequest(prompt="x", model="tiny", hires_scale=2, upscaler="Bogus"))
    with pytest.raises(RequestError, match="hires fix would make 1024x1024"):
        tiny_engine.prepare(GenerationRequest(prompt="x", model="tiny", width=512, height=512, hires_scale=2))
    image = tmp_path / "in.png"
    Image.new("RGB", (600, 600)).save(image)
    with pytest.raises(RequestError, match="limit is 4096 pixels per side"):
        tiny_engine.prepare(GenerationRequest(mode="upscale", init_image=str(image), upscale_factor=8))
    # a user model without the optional spandrel: a clear sentence, not a traceback
    (tmp_path / "models" / "ESRGAN").mkdir(parents=True)
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(1)}, str(tmp_path / "models" / "ESRGAN" / "4x-Fake.safetensors"))
    engine = Engine(Catalog(tmp_path / "models", include_embedded=False))
    try:
        import spandrel  # noqa: F401
        expected = "not an upscaler spandrel knows"
    except ImportError:
        expected = "optional 'spandrel' package"
    with pytest.raises(ModelLoadError, match=expected):
        engine.generate(GenerationRequest(mode="upscale", init_image=str(image), upscaler="4x-Fake"))


@pytest.mark.parametrize("fields", [
    dict(steps=2, hires_scale=2, hires_strength=0.3),  # int(2 * 0.3) = 0 diffusers steps
    dict(steps=2, hires_scale=2, hires_strength=0.0),  # no second pass at all: upscaled only
])
def test_hires_fix_with_few_steps_or_zero_strength(tiny_engine, fields):
    result = tiny_engine.generate(GenerationRequest(prompt="a tree", model="tiny", width=64, height=64, seed=1,
                                                    **fields))
    assert result.images[0].image.size == (128, 128)


def test_img2img_with_tiny_strength_still_runs(tiny_engine, tmp_path):
    init = tmp_path / "init.png"
    Image.new("RGB", (64, 64), (10, 200, 30)).save(init)
    result = tiny_engine.generate(GenerationRequest(mode="img2img", prompt="x", model="tiny", steps=3, strength=0.1,
                                                    init_image=str(init)))
    assert result.images[0].image.size == (64, 64)
    zero = tiny_engine.generate(GenerationRequest(mode="img2img", prompt="x", model="tiny", steps=3, strength=0.0,
                                                  init_image=str(init)))
    assert np.array_equal(np.asarray(zero.images[0].image), np.asarray(Image.open(init)))
    assert zero.images[0].drift["ssim"] == pytest.approx(1.0)


@pytest.mark.parametrize("model", ["tiny", "tiny-inpaint"])
def test_inpaint_with_tiny_or_zero_strength_still_runs(tiny_engine, tmp_path, model):
    init, mask = tmp_path / "init.png", tmp_path / "mask.png"
    Image.new("RGB", (64, 64), (10, 200, 30)).save(init)
    Image.new("L", (64, 64), 255).save(mask)
    for strength in (0.1, 0.0):
        result = tiny_engine.generate(GenerationRequest(mode="inpaint", prompt="x", model=model, steps=3,
                                                        strength=strength, init_image=str(init), mask=str(mask),
                                                        count=2))
        assert [im.image.size for im in result.images] == [(64, 64)] * 2
        assert (np.array_equal(np.asarray(result.images[0].image), np.asarray(Image.open(init))) == (strength == 0))


def test_upscale_reports_tiles_and_can_be_cancelled(tiny_engine, tmp_path):
    from imagestudio.engine import CancelToken
    from imagestudio.errors import Cancelled

    image = tmp_path / "in.png"
    photo("chelsea").resize((300, 200)).save(image)  # 3 x 2 tiles of 128
    seen = []
    result = tiny_engine.generate(GenerationRequest(mode="upscale", init_image=str(image), upscaler="Studio"),
                                  on_progress=lambda p: seen.append((p.step, p.total)))
    assert result.images[0].image.size == (600, 400) and seen == [(i, 6) for i in range(1, 7)]
    token = CancelToken()
    done = []

    def cancel_after_two(progress):
        done.append(progress.step)
        if progress.step == 2:
            token.cancel()

    with pytest.raises(Cancelled):
        tiny_engine.generate(GenerationRequest(mode="upscale", init_image=str(image), upscaler="Studio"),
                             on_progress=cancel_after_two, cancel=token)
    assert done == [1, 2]


def test_hires_fix_from_the_cli(tmp_path, tiny_models_dir):
    from typer.testing import CliRunner

    from imagestudio.cli import app
    from imagestudio.store.metadata import read_parameters

    result = CliRunner().invoke(app, ["generate", "a green tree", "--width", "64", "--height", "64", "--steps", "2",
                                      "--hires-scale", "2", "--hires-strength", "0.5", "--upscaler", "Studio",
                                      "--model", "tiny", "--models", str(tiny_models_dir), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    (png,) = tmp_path.glob("*.png")
    assert Image.open(png).size == (128, 128) and "Hires upscaler: Studio" in read_parameters(png)
    bad = CliRunner().invoke(app, ["generate", "a tree", "--hires-scale", "2", "--upscaler", "Bogus", "--model", "tiny",
                                   "--models", str(tiny_models_dir), "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "unknown upscaler 'Bogus'" in bad.output


def test_an_esrgan_model_loads_through_spandrel_and_runs_tiled(tmp_path):
    """A user's ESRGAN (RRDBNet) file in models/ESRGAN, as .safetensors and as
    a pickled .pth read by the restricted loader: both load through spandrel
    and upscale 4x; an image within one tile equals the network run directly,
    a larger one runs tiled to the exact size. Needs the optional spandrel,
    whose torchvision does not import beside the CPU torch pinned here:
    skipped then (checked in a venv with torch 2.14.1 + torchvision 0.29.1)."""
    spandrel = pytest.importorskip("spandrel", exc_type=ImportError)
    from safetensors.torch import save_file
    from spandrel.architectures.ESRGAN import ESRGAN

    from imagestudio.engine.upscale import find_user_upscalers, load_user_upscaler

    torch.manual_seed(0)
    net = ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=4).eval()
    folder = tmp_path / "models" / "ESRGAN"
    folder.mkdir(parents=True)
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(folder / "4x-tiny.safetensors"))
    torch.save(state, folder / "4x-tiny-pickled.pth")
    assert set(find_user_upscalers(tmp_path / "models")) == {"4x-tiny", "4x-tiny-pickled"}

    small = Image.fromarray(np.random.default_rng(1).integers(0, 255, (40, 48, 3), dtype=np.uint8))
    with torch.no_grad():
        x = torch.from_numpy(np.array(small)).permute(2, 0, 1)[None].float() / 255
        direct = net(x).clamp(0, 1)[0].permute(1, 2, 0).mul(255).round().byte().numpy()
    for name in ("4x-tiny", "4x-tiny-pickled"):
        descriptor = load_user_upscaler(find_user_upscalers(tmp_path / "models")[name])
        assert isinstance(descriptor, spandrel.ImageModelDescriptor) and descriptor.scale == 4
        out = upscale(small, 4, name, models_dir=tmp_path / "models")
        assert out.size == (192, 160)
        assert np.abs(np.asarray(out).astype(int) - direct.astype(int)).max() <= 1
    big = Image.fromarray(np.random.default_rng(2).integers(0, 255, (300, 260, 3), dtype=np.uint8))
    tiles = []
    out = upscale(big, 4, "4x-tiny", models_dir=tmp_path / "models", on_tile=lambda i, n: tiles.append(n))
    assert out.size == (1040, 1200) and len(tiles) > 1
