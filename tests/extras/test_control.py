"""Structure control: the preprocessors draw what ControlNets expect, a tiny
ControlNet built from config (random weights) runs through the real loading
and pipeline code and obeys weight and start/end, and the edge-overlap measure
behaves. That the trained ControlNet shipped for the embedded model follows
sketches and edges is test_control_embedded.py's question."""

import numpy as np
import pytest
from PIL import Image, ImageDraw

from imagestudio.engine.control import canny, edge_overlap, scribble
from imagestudio.request import Control, GenerationRequest
from imagestudio.store.metadata import parse_parameters

BASE = dict(prompt="a red square", model="tiny", width=64, height=64, steps=3, seed=21, sampler="Euler")


@pytest.fixture(scope="module")
def tiny_controlnet(tiny_models_dir):
    from tiny import save_tiny_controlnet

    return save_tiny_controlnet(tiny_models_dir)


@pytest.fixture(scope="module")
def square(tmp_path_factory):
    image = Image.new("RGB", (64, 64), (20, 20, 20))
    ImageDraw.Draw(image).rectangle((16, 16, 47, 47), fill=(230, 230, 230))
    path = tmp_path_factory.mktemp("control") / "square.png"
    image.save(path)
    return path


def px(result):
    return np.asarray(result.images[0].image, dtype=np.int16)


def test_canny_draws_the_outline():
    image = Image.new("RGB", (64, 64), (20, 20, 20))
    ImageDraw.Draw(image).rectangle((16, 16, 47, 47), fill=(230, 230, 230))
    edges = np.asarray(canny(image).convert("L")) > 127
    assert edges[16:48, 15:18].any(axis=1).all() and edges[16:48, 46:49].any(axis=1).all()
    assert not edges[24:40, 24:40].any() and not edges[:8].any()


def test_scribble_reads_a_drawing_and_thickens_it():
    drawing = Image.new("RGB", (64, 64), "white")
    ImageDraw.Draw(drawing).line((8, 32, 56, 32), fill="black", width=1)
    lines = np.asarray(scribble(drawing).convert("L")) > 127
    assert lines[31:34, 10:54].all(), "a 1-pixel pen line becomes a 3-pixel white line"
    assert lines.mean() < 0.1
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    assert (np.asarray(scribble(photo).convert("L")) > 127).mean() < 1.0  # edges, not "all ink"


def test_grayscale_keeps_brightness_only():
    from imagestudio.engine.control import preprocess

    image = Image.new("RGB", (80, 40), (200, 40, 40))
    out = np.asarray(preprocess("grayscale", image, (64, 32)))
    assert out.shape == (32, 64, 3) and (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


def test_edge_overlap_measure(square):
    edges = canny(Image.open(square))
    assert edge_overlap(Image.open(square), edges) == {"recall": 1.0, "precision": 1.0, "f1": 1.0}
    assert edge_overlap(Image.new("RGB", (64, 64), "grey"), edges)["f1"] == 0.0
    noise = Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    scores = edge_overlap(noise, edges)
    assert scores["recall"] > 0.9 and scores["precision"] < 0.6, "edges everywhere is not following the control"


def test_control_weight_and_range_are_obeyed(tiny_engine, tiny_controlnet, square):
    plain = tiny_engine.generate(GenerationRequest(**BASE))

    def controlled(**spec):
        return tiny_engine.generate(GenerationRequest(**BASE, control=Control(type="canny", image=str(square), **spec)))

    zero, full, late = controlled(weight=0.0), controlled(weight=1.0), controlled(weight=1.0, start=0.5)
    assert np.array_equal(px(zero), px(plain)), "weight 0 is no control, bit for bit"
    assert np.abs(px(full) - px(plain)).mean() > 1.0, "weight 1 changes the image"
    assert np.abs(px(late) - px(full)).mean() > 0.5, "a later start changes it again"
    params = parse_parameters(full.images[0].parameters)
    assert params["ControlNet 0"] == ("Module: canny, Model: tiny-canny, Weight: 1.0, "
                                      "Guidance Start: 0.0, Guidance End: 1.0")
    # the ControlNet pipeline shares the model's weights
    control_pipe = tiny_engine.cache.get_control(tiny_engine.catalog.get("tiny"), tiny_controlnet)
    assert control_pipe.unet is tiny_engine.cache.get(tiny_engine.catalog.get("tiny")).unet


def test_control_errors(tiny_engine, tiny_controlnet, square):
    from pydantic import ValidationError

    from imagestudio.errors import ModelNotFound

    with pytest.raises(ValidationError, match="control start must be before its end"):
        Control(type="canny", image=str(square), start=0.6, end=0.4)
    with pytest.raises(ValidationError, match="unknown control type 'depth'"):
        Control(type="depth", image=str(square))
    with pytest.raises(ModelNotFound, match="unknown ControlNet 'nope'; installed: tiny-canny"):
        tiny_engine.generate(GenerationRequest(**BASE, control=Control(image=str(square), model="nope")))


def test_control_from_the_cli(tmp_path, tiny_models_dir, tiny_controlnet, square):
    from typer.testing import CliRunner

    from imagestudio.cli import app
    from imagestudio.store.metadata import read_parameters

    result = CliRunner().invoke(app, ["generate", "a red square", "--control", "canny", "--control-image", str(square),
                                      "--control-weight", "0.8", "--control-end", "0.5", "--steps", "2", "--model",
                                      "tiny", "--models", str(tiny_models_dir), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    (png,) = tmp_path.glob("*.png")
    assert "Weight: 0.8" in read_parameters(png) and "Guidance End: 0.5" in read_parameters(png)


def test_a_controlnet_made_for_another_unet_is_refused_with_a_reason(tmp_path, tiny_models_dir, square):
    """E.g. the embedded model's ControlNet on a model retrained at other widths: a
    message naming both widths, exit code 2, no image, instead of a shape error mid-run."""
    from diffusers import ControlNetModel, UNet2DConditionModel
    from typer.testing import CliRunner

    from imagestudio.cli import app

    models = tmp_path / "models"
    (models / "Stable-diffusion").mkdir(parents=True)
    (models / "Stable-diffusion" / "tiny").symlink_to(tiny_models_dir / "Stable-diffusion" / "tiny")
    narrow = UNet2DConditionModel(block_out_channels=(16, 32), layers_per_block=1, sample_size=64,
                                  down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                  up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
                                  cross_attention_dim=32, attention_head_dim=4, norm_num_groups=8)
    ControlNetModel.from_unet(narrow, conditioning_embedding_out_channels=(16, 32)).save_pretrained(
        models / "ControlNet" / "narrow-canny")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["generate", "a red square", "--control", "canny", "--control-image", str(square),
                                      "--steps", "2", "--model", "tiny", "--models", str(models), "--out", str(out)])
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert "ControlNet 'narrow-canny' does not fit this model" in message
    assert "block_out_channels (16, 32), the model's UNet has (32, 64)" in message
    assert not out.exists() or not list(out.glob("*.png"))


def test_controlnet_training_runs_and_its_result_loads(tmp_path, tiny_models_dir):
    """Plumbing only (3 steps on the random tiny model): the trainer writes a
    ControlNet folder the engine loads and uses. Whether a trained one
    follows its edges is `control_train.evaluate`'s question."""
    pytest.importorskip("imagestudio.embedded.renderer")
    import shutil

    from imagestudio.engine import Catalog, Engine
    from imagestudio.engine.control_train import conditioning_channels, evaluate, train_controlnet

    assert conditioning_channels(8) == (16, 32, 64, 128) and conditioning_channels(2) == (16, 32)
    models = tmp_path / "models"
    shutil.copytree(tiny_models_dir / "Stable-diffusion" / "tiny", models / "Stable-diffusion" / "tiny")
    out = train_controlnet(models / "Stable-diffusion" / "tiny", models / "ControlNet" / "tiny-canny", steps=3, batch=2)
    assert (out / "config.json").exists() and "steps=3" in (out / "training.txt").read_text()
    engine = Engine(Catalog(models, include_embedded=False))
    scores = evaluate(engine, "tiny", "tiny-canny", n=1, steps=2)
    assert set(scores) == {"controlled", "free"} and 0 <= scores["controlled"]["edge_f1"] <= 1


def test_control_in_img2img(tiny_engine, tiny_controlnet, square, tmp_path):
    init = tmp_path / "init.png"
    Image.new("RGB", (64, 64), (200, 60, 60)).save(init)
    base = dict(BASE, mode="img2img", init_image=str(init), strength=0.8)
    plain = tiny_engine.generate(GenerationRequest(**base))
    zero = tiny_engine.generate(GenerationRequest(**base, control=Control(image=str(square), weight=0.0)))
    full = tiny_engine.generate(GenerationRequest(**base, control=Control(image=str(square), weight=1.0)))
    assert np.array_equal(px(zero), px(plain))
    assert np.abs(px(full) - px(plain)).mean() > 1.0
    assert "ControlNet 0" in full.images[0].parameters and full.images[0].drift is not None
    # txt2img and img2img ControlNet pipelines share one ControlNet module
    info = tiny_engine.catalog.get("tiny")
    assert (tiny_engine.cache.get_control(info, tiny_controlnet, "img2img").controlnet
            is tiny_engine.cache.get_control(info, tiny_controlnet).controlnet)


def test_shipped_controlnets_are_offered_to_the_embedded_model_only(tmp_path, monkeypatch):
    import imagestudio.engine.control as control

    shipped = tmp_path / "shipped"
    (shipped / "embedded-canny").mkdir(parents=True)
    (shipped / "embedded-canny" / "config.json").write_text("{}")
    user = tmp_path / "models" / "ControlNet" / "control_sd15_canny"
    user.mkdir(parents=True)
    (user / "config.json").write_text("{}")
    monkeypatch.setattr(control, "SHIPPED_DIR", shipped)
    assert control.choose_controlnet(tmp_path / "models", "canny", architecture="embedded")[0] == "embedded-canny"
    assert control.choose_controlnet(tmp_path / "models", "canny", architecture="sd15")[0] == "control_sd15_canny"
    assert control.choose_controlnet(None, "canny", architecture="embedded")[0] == "embedded-canny"
