"""Image analysis: a studio PNG gives back its exact prompt, model and size;
other images get a description (when the embedded judge is installed) and the
nearest aspect ratio; `imagestudio analyse` and `imagestudio upscale` as a user runs them."""

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from imagestudio.cli import app
from imagestudio.engine.analyse import analyse, caption, nearest_aspect

runner = CliRunner()


def run(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result


@pytest.fixture()
def models(tiny_models_dir):
    return ["--models", tiny_models_dir]


def test_nearest_aspect():
    assert nearest_aspect(1920, 1080) == "16:9"
    assert nearest_aspect(512, 500) == "1:1"
    assert nearest_aspect(600, 400) == "3:2"
    assert nearest_aspect(300, 400) == "3:4"


def test_analysis_of_a_studio_png_returns_its_exact_prompt(tmp_path, models):
    prompt = "a (red:1.3) circle, on the left; with: commas"
    made = run("generate", prompt, "--negative", "blurry", "--steps", 2, "--model", "tiny", "--aspect", "16:9",
               "--seed", 9, "--out", tmp_path, *models)
    assert made.exit_code == 0, made.output
    (png,) = tmp_path.glob("*.png")
    result = run("analyse", png, "--json", *models)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["source"] == "parameters"
    assert data["prompt"] == prompt and data["negative_prompt"] == "blurry"
    assert data["model"] == "tiny" and data["aspect_ratio"] == "16:9"
    assert data["settings"]["Seed"] == "9" and data["request"]["prompt"] == prompt
    text = run("analyse", png, *models).output
    assert f"prompt: {prompt}" in text and "aspect 16:9" in text


def test_an_upscaled_studio_png_still_analyses_to_its_prompt(tmp_path, models):
    run("generate", "a yellow star", "--steps", 2, "--model", "tiny", "--width", 64, "--height", 64,
        "--out", tmp_path / "a", *models)
    (png,) = (tmp_path / "a").glob("*.png")
    up = run("upscale", png, "--scale", 2, "--upscaler", "Lanczos", "--out", tmp_path / "b", *models)
    assert up.exit_code == 0, up.output
    (big,) = (tmp_path / "b").glob("*.png")
    assert Image.open(big).size == (128, 128)
    data = json.loads(run("analyse", big, "--json", *models).stdout)
    assert data["prompt"] == "a yellow star" and data["settings"]["Postprocess upscaler"] == "Lanczos"
    assert "Studio" in run("upscale", png, "--list", *models).output


def test_a_plain_photo_gets_a_size_and_no_invented_prompt(tmp_path, monkeypatch):
    import imagestudio.engine.analyse as module

    monkeypatch.setattr(module, "describe", lambda image: None)  # no judge installed
    result = analyse(Image.new("RGB", (640, 480)))
    assert result["source"] == "none" and result["prompt"] == "" and result["aspect_ratio"] == "4:3"


def test_judge_labels_become_a_prompt():
    labels = {"objects": [{"color": "blue", "kind": "star", "position": "right", "confidence": 0.9},
                          {"color": "orange", "kind": "circle", "position": "left", "confidence": 0.8}],
              "background": "night", "style": "comic"}
    assert caption(labels) == "an orange circle on the left and a blue star on the right, night background, comic style"


def test_judge_describes_a_rendered_scene_when_installed():
    judge = pytest.importorskip("imagestudio.embedded.judge")
    if not judge.WEIGHTS.exists():
        pytest.skip("the embedded judge's weights are not installed")
    from imagestudio.embedded import renderer

    scene = renderer.Scene([renderer.SceneObject("red", "circle", "left", 48)], "white", "flat")
    result = analyse(renderer.render(scene))
    assert result["source"] == "judge" and result["prompt"].startswith("a red circle on the left")


def test_analyse_errors(tmp_path, models):
    assert run("analyse", tmp_path / "none.png", *models).exit_code == 2
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    result = run("analyse", broken, *models)
    assert result.exit_code == 2 and "could not be read as an image" in result.output


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_a1111_jpeg_and_webp_settings_in_exif(tmp_path, fmt):
    text = "a cat in a hat, (sharp:1.2)\nNegative prompt: dog\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, " \
           "Size: 768x512, Model: dreamshaper_8"
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\x00" + text.encode("utf-16-be")  # what A1111 (piexif) writes
    path = tmp_path / f"a1111.{fmt.lower()}"
    Image.new("RGB", (768, 512), "grey").save(path, fmt, exif=exif.tobytes())
    result = analyse(Image.open(path))
    assert result["source"] == "parameters" and result["prompt"] == "a cat in a hat, (sharp:1.2)"
    assert result["negative_prompt"] == "dog" and result["model"] == "dreamshaper_8" and result["aspect_ratio"] == "3:2"
