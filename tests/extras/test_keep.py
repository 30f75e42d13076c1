"""Keep what must stay: kept pixels are bit-identical after img2img, faces are
found without downloads, and every img2img result reports its drift."""

import numpy as np
import pytest
from PIL import Image

from imagestudio.engine import request_json
from imagestudio.engine.keep import detect_faces, drift
from imagestudio.request import GenerationRequest
from imagestudio.store.metadata import parse_parameters, png_bytes, read_parameters

BASE = dict(mode="img2img", prompt="a portrait, detailed", model="tiny", steps=3, seed=7, strength=0.7)


def rgb(path_or_image):
    image = Image.open(path_or_image) if not isinstance(path_or_image, Image.Image) else path_or_image
    return np.asarray(image.convert("RGB"))


@pytest.fixture(scope="module")
def keep_file(tmp_path_factory):
    mask = Image.new("L", (128, 128), 0)
    mask.paste(255, (0, 64, 128, 128))  # keep the bottom half
    path = tmp_path_factory.mktemp("keep") / "keep.png"
    mask.save(path)
    return path


def test_keep_mask_is_bit_identical_and_drift_is_reported(tiny_engine, astronaut, keep_file):
    plain = tiny_engine.generate(GenerationRequest(**BASE, init_image=str(astronaut)))
    kept = tiny_engine.generate(GenerationRequest(**BASE, init_image=str(astronaut), keep_mask=str(keep_file), count=2))
    source = rgb(astronaut)
    region = np.asarray(Image.open(keep_file)) > 127
    for img in kept.images:
        out = rgb(img.image)
        assert np.array_equal(out[region], source[region]), "kept pixels must not change at all"
        assert (out[~region] != source[~region]).any(axis=-1).mean() > 0.5, "the rest is repainted"
        assert img.drift["kept_fraction"] == 0.5
        assert img.drift["kept_ssim"] > 0.9 > img.drift["ssim"]
    # without a keep mask the same region drifts: the figure tells them apart
    free = plain.images[0].drift
    assert free["kept_ssim"] is None and free["ssim"] < kept.images[0].drift["ssim"]
    # the drift goes into the PNG's infotext
    params = parse_parameters(kept.images[0].parameters)
    assert params["Drift SSIM"] == f"{kept.images[0].drift['ssim']:.4f}"
    assert params["Kept SSIM"] == f"{kept.images[0].drift['kept_ssim']:.4f}" and params["Keep mask"] == "yes"
    data = png_bytes(kept.images[0].image, kept.images[0].parameters, request_json(kept.request, 0))
    assert "Drift SSIM: " in read_parameters(data)


def test_keep_faces_finds_and_keeps_the_face(tiny_engine, astronaut):
    (box,) = detect_faces(Image.open(astronaut))
    result = tiny_engine.generate(GenerationRequest(**BASE, init_image=str(astronaut), keep_faces=True))
    left, top, right, bottom = box
    out, source = rgb(result.images[0].image), rgb(astronaut)
    assert np.array_equal(out[top:bottom, left:right], source[top:bottom, left:right])
    assert result.images[0].drift["faces"] == 1
    assert "Kept faces: 1" in result.images[0].parameters


def test_no_face_no_keep(tiny_engine, tmp_path):
    flat = tmp_path / "flat.png"
    Image.new("RGB", (64, 64), (90, 120, 200)).save(flat)
    result = tiny_engine.generate(GenerationRequest(**BASE, init_image=str(flat), keep_faces=True))
    assert result.images[0].drift["faces"] == 0 and result.images[0].drift["kept_ssim"] is None


def test_drift_is_one_for_an_unchanged_image(astronaut):
    image = Image.open(astronaut)
    assert drift(image, image.copy()).overall == pytest.approx(1.0)
    noisy = Image.fromarray(np.clip(rgb(image) + np.random.default_rng(0).normal(0, 40, (128, 128, 3)), 0, 255)
                            .astype(np.uint8))
    assert drift(image, noisy).overall < 0.6


def test_keep_needs_img2img():
    with pytest.raises(ValueError, match="keep mask / keep faces apply to img2img"):
        GenerationRequest(prompt="x", keep_faces=True)


def test_keep_from_the_cli(tmp_path, tiny_models_dir, astronaut, keep_file):
    from typer.testing import CliRunner

    from imagestudio.cli import app

    result = CliRunner().invoke(app, ["generate", "a portrait", "--init", str(astronaut), "--keep", str(keep_file),
                                      "--steps", "2", "--model", "tiny", "--models", str(tiny_models_dir),
                                      "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "drift: SSIM" in result.output
    (png,) = tmp_path.glob("*.png")
    region = np.asarray(Image.open(keep_file)) > 127
    assert np.array_equal(rgb(png)[region], rgb(astronaut)[region])
    assert "Keep mask: yes" in read_parameters(png)
