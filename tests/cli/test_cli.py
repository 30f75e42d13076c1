"""The CLI as a user runs it: files written, settings printed, exact
reproduction with --from, and clear errors with exit codes, no tracebacks."""

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from imagestudio.cli import app
from imagestudio.store.metadata import parse_parameters, read_parameters

runner = CliRunner()


def run(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result


@pytest.fixture()
def models(tiny_models_dir):
    return ["--models", tiny_models_dir]


def test_generate_writes_pngs_with_settings(tmp_path, models):
    result = run("generate", "a red circle", "--count", 2, "--seed", 42, "--steps", 2, "--model", "tiny",
                 "--width", 64, "--height", 64, "--out", tmp_path, *models)
    assert result.exit_code == 0, result.output
    files = sorted(tmp_path.glob("*.png"))
    assert len(files) == 2
    seeds = sorted(parse_parameters(read_parameters(f))["Seed"] for f in files)
    assert seeds == ["42", "43"]
    info = run("info", files[0])
    assert info.exit_code == 0 and "Steps: 2" in info.output and "a red circle" in info.output
    # exactly the stored infotext, one settings line, never wrapped at the terminal width
    assert info.output == read_parameters(files[0]) + "\n"


def test_from_reproduces_bit_exactly(tmp_path, models):
    first = tmp_path / "first"
    run("generate", "a blue (house:1.4) at night", "--count", 3, "--steps", 3, "--model", "tiny",
        "--aspect", "16:9", "--sampler", "DPM++ 2M Karras", "--out", first, *models)
    source = sorted(first.glob("*.png"))[2]  # the third image of the batch
    again = tmp_path / "again"
    result = run("generate", "--from", source, "--out", again, *models)
    assert result.exit_code == 0, result.output
    (copy,) = list(again.glob("*.png"))
    assert np.array_equal(np.asarray(Image.open(source)), np.asarray(Image.open(copy)))
    assert read_parameters(copy) == read_parameters(source)


def test_img2img_inpaint_outpaint_from_the_cli(tmp_path, models):
    init = tmp_path / "init.png"
    Image.new("RGB", (64, 64), (200, 40, 40)).save(init)
    mask = tmp_path / "mask.png"
    m = Image.new("L", (64, 64), 0)
    m.paste(255, (0, 0, 32, 64))
    m.save(mask)
    # without --strength, img2img keeps more of the picture than inpaint, which usually
    # asks for something new under the mask; outpaint always fills its new area from noise
    for args, size, strength in (
        (["--init", init, "--strength", 0.5], (64, 64), "0.5"),
        (["--init", init], (64, 64), "0.6"),
        (["--init", init, "--mask", mask, "--model", "tiny-inpaint"], (64, 64), "0.9"),
        (["--init", init, "--mask", mask, "--strength", 0.4], (64, 64), "0.4"),
        (["--init", init, "--outpaint", "left=32,right=32"], (128, 64), "1.0"),
    ):
        out = tmp_path / str(len(list(tmp_path.iterdir())))
        result = run("generate", "a green tree", "--steps", 2, "--out", out, *models,
                     *(["--model", "tiny"] if "--model" not in args else []), *args)
        assert result.exit_code == 0, result.output
        (png,) = list(out.glob("*.png"))
        assert Image.open(png).size == size
        assert parse_parameters(read_parameters(png))["Denoising strength"] == strength


def test_color_correction_from_the_cli(tmp_path, models):
    init = tmp_path / "init.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(init)
    out = tmp_path / "cc"
    result = run("generate", "a green tree", "--steps", 2, "--model", "tiny", "--init", init, "--seed", 4,
                 "--color-correction", "--out", out, *models)
    assert result.exit_code == 0, result.output
    (png,) = list(out.glob("*.png"))
    assert parse_parameters(read_parameters(png))["Color correction"] == "yes"
    again = tmp_path / "again"  # the stored request carries it: --from redoes the same
    assert run("generate", "--from", png, "--out", again, *models).exit_code == 0
    (copy,) = list(again.glob("*.png"))
    assert np.array_equal(np.asarray(Image.open(png)), np.asarray(Image.open(copy)))
    refused = run("generate", "a green tree", "--model", "tiny", "--color-correction", "--out", out, *models)
    assert refused.exit_code == 2 and "color correction applies to img2img" in refused.output


@pytest.mark.parametrize("args, message, code", [
    (["x" * 2001], "at most 2000 characters", 2),
    (["a tree", "--width", 4096, "--height", 4096], "less than or equal to 2048", 2),
    (["a tree", "--count", 9], "less than or equal to 4", 2),
    (["a tree", "--model", "missing-model"], "unknown model 'missing-model'", 3),
    (["a tree", "--sampler", "Nope"], "unknown sampler", 2),
    (["a tree", "--style", "Baroque Disco"], "unknown style", 2),
    (["a tree", "--aspect", "5:1"], "unknown aspect ratio", 2),
    (["a tree", "--init", "/no/such/file.png"], "file not found", 2),
    (["a tree", "--outpaint", "sideways=3"], "outpaint expects", 2),
    (["", "--model", "tiny"], "prompt is empty", 2),
])
def test_bad_input_gets_a_clear_error(tmp_path, models, args, message, code):
    result = run("generate", *args, "--out", tmp_path, *models)
    assert result.exit_code == code, result.output
    assert message in result.output
    assert not list(tmp_path.glob("*.png"))


def test_broken_image_and_missing_settings(tmp_path, models):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image at all")
    result = run("generate", "a tree", "--init", broken, "--model", "tiny", "--out", tmp_path / "o", *models)
    assert result.exit_code == 2 and "could not be read as an image" in result.output
    plain = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(plain)
    assert "holds no generation settings" in run("info", plain).output
    assert "holds no Image Studio settings" in run("generate", "--from", plain, *models).output


def test_models_lists_the_catalog(models):
    result = run("models", *models)
    assert result.exit_code == 0
    assert "tiny-inpaint" in result.output and "Stable Diffusion 1.x" in result.output
