"""`imagestudio eval --json` prints one JSON object with the adherence figures."""

import json

from typer.testing import CliRunner

from imagestudio.cli import app


def test_eval_json_smoke():
    result = CliRunner().invoke(app, ["eval", "--json", "--images", "1", "--steps", "8", "--judge-images", "20",
                                      "--threads", "2"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout.strip().splitlines()[-1])
    for key in ("adherence_single", "adherence_two", "adherence_paraphrase", "judge_accuracy", "images", "seconds"):
        assert key in data
    # one prompt per set, and the two-object prompt once more through the studio's engine
    assert data["images"] == 4
    assert 0 <= data["adherence_single"] <= 1 and 0 <= data["judge_accuracy"] <= 1
    assert 0 <= data["adherence_two_studio"] <= 1


def test_train_help_lists_the_stages():
    result = CliRunner().invoke(app, ["train", "--help"])
    assert result.exit_code == 0
    assert "--max-minutes" in result.output and "--stages" in result.output
    assert "--finetune-steps" in result.output and "finetune" in result.output
    assert "--finetune-lr" in result.output and "--init-from" in result.output
    assert "--grounding-weight" in result.output and "ground" in result.output
    assert "--color-weights" in result.output


def test_train_refuses_colour_weights_it_cannot_read(tmp_path):
    for bad, message in (("beige=2", "unknown colour 'beige'"), ("brown=lots", "expected COLOUR=NUMBER"),
                         ("brown=0", "must be above 0")):
        result = CliRunner().invoke(app, ["train", "--work", str(tmp_path / "work"), "--color-weights", bad,
                                          "--stages", "data"])
        assert result.exit_code != 0 and message in result.output, result.output
    assert not (tmp_path / "work").exists()  # refused before any work


def test_train_init_from_a_folder_that_is_no_model_is_refused(tmp_path):
    result = CliRunner().invoke(app, ["train", "--work", str(tmp_path / "work"), "--init-from", str(tmp_path),
                                      "--stages", "data"])
    assert result.exit_code != 0
    assert "not an exported diffusers model folder" in result.output
    assert not (tmp_path / "work" / "data.npz").exists()  # refused before any work


def test_train_refuses_a_device_it_cannot_use(tmp_path):
    result = CliRunner().invoke(app, ["train", "--work", str(tmp_path / "work"), "--device", "warp9",
                                      "--stages", "data"])
    assert result.exit_code == 2
    assert "'warp9' cannot be used here" in " ".join(result.output.replace("│", " ").split())
    assert not (tmp_path / "work").exists()  # refused before any work


def test_eval_runs_the_edit_checks_on_a_catalog_model_stored_as_a_diffusers_folder(tmp_path, monkeypatch):
    """`--model NAME --edits N` used to print no edit figures at all for a catalog model
    (the checks ran only for 'embedded' or a folder path), without saying so; and its
    prompt sets left out the embedded model's training captions instead of its own."""
    from imagestudio.embedded import evaluate as ev
    from imagestudio.embedded import model_dir

    mini = tmp_path / "models" / "mini"
    mini.mkdir(parents=True)
    for part in model_dir().iterdir():
        if part.name != "studio.json":
            (mini / part.name).symlink_to(part)
    studio = json.loads((model_dir() / "studio.json").read_text())
    studio["training"] = {"seed": 5, "scenes": 30, "unet_steps": 1, "finetune_steps": 0}
    (mini / "studio.json").write_text(json.dumps(studio))
    excluded_from = []
    real = ev.all_training_captions
    monkeypatch.setattr(ev, "all_training_captions", lambda folder: excluded_from.append(folder) or real(folder))
    result = CliRunner().invoke(app, ["eval", "--json", "--model", "mini", "--models-dir", str(tmp_path / "models"),
                                      "--images", "1", "--steps", "4", "--judge-images", "20",
                                      "--edits", "1", "--threads", "2"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert data["edit_images"] == 2
    assert 0 <= data["img2img_keeps_labels"] <= 1 and 0 <= data["inpaint_recolor"] <= 1
    assert excluded_from == [mini]


def test_eval_refuses_edit_checks_with_too_few_steps_to_run_img2img():
    result = CliRunner().invoke(app, ["eval", "--json", "--images", "1", "--steps", "3", "--edits", "1"])
    assert result.exit_code == 2
    assert "needs --steps 4 or more" in " ".join(result.output.replace("│", " ").split())


def test_eval_refuses_edit_checks_on_a_single_file_model_before_generating(tmp_path):
    import torch
    from safetensors.torch import save_file

    models = tmp_path / "models"
    models.mkdir()
    save_file({"w": torch.zeros(2)}, str(models / "tiny.safetensors"))  # never loaded: refused first
    result = CliRunner().invoke(app, ["eval", "--json", "--model", "tiny", "--models-dir", str(models),
                                      "--images", "1", "--steps", "4", "--edits", "1"])
    assert result.exit_code == 2
    assert "tiny is a single-file model: --edits needs a diffusers folder" in " ".join(
        result.output.replace("│", " ").split())
