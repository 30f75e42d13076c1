"""`imagestudio train --replay`: a model's recorded history (base run + fine-tune cycles)
run again in one command. On a tiny budget the replay must give back the very bytes of
the model whose record it read; on the shipped record it must plan the cycles the README
lists, with their settings."""

import dataclasses
import json

import pytest
import torch

from imagestudio.embedded import WEIGHTS_DIR
from imagestudio.embedded import replay as R
from imagestudio.embedded import training as T

TINY = T.TrainConfig(scenes=12, vae_steps=2, vae_batch=2, vae_full_steps=1, decoder_steps=2,
                     unet_steps=3, unet_batch=2, finetune_steps=2, checkpoint_seconds=0)


def test_the_shipped_record_plans_the_base_run_and_each_cycle_with_its_settings():
    steps = R.plan(R.load_record(WEIGHTS_DIR), T.TrainConfig())
    assert [cfg.seed for cfg, _ in steps] == [1234, 2026, 2027, 2031, 2032, 2033, 2034]
    base, base_stages = steps[0]
    assert (base.unet_steps, base.finetune_steps, base.finetune_lr) == (2300, 3600, 3e-4)
    assert base_stages[:4] == ("data", "vae", "latents", "decoder") and base.grounding_weight == 0
    by_seed = {cfg.seed: (cfg, stages) for cfg, stages in steps}
    second, second_stages = by_seed[2026]
    # continued at half the base run's learning rate, with no grounding data
    assert second.finetune_lr == 1.5e-4 and "ground" not in second_stages and "vae" not in second_stages
    third, third_stages = by_seed[2027]
    assert third.grounding_weight == 0.1 and third.binding_weight == 0 and "ground" in third_stages
    assert third.color_weights is None and third.text_layers == 0
    assert by_seed[2032][0].text_layers == 1 and by_seed[2033][0].text_layers == 2
    assert {cfg.finetune_noise_bias for cfg, _ in steps} == {1.5}  # all drew at the default
    ninth = by_seed[2034][0]
    assert (ninth.finetune_steps, ninth.separation_weight, ninth.color_weights) == \
        (1200, 0.3, {"brown": 3.0, "purple": 3.0})


def test_a_base_run_with_attention_losses_prepares_their_data():
    """A from-scratch run (the half-width probes) may use the attention losses from its
    first step: its replay renders the grounding data before the UNet stages."""
    record = {"seed": 3004, "unet_steps": 0, "finetune_steps": 12500, "unet_channels": [16, 32, 64, 128],
              "grounding_weight": 0.1, "separation_weight": 0.3}
    ((cfg, stages),) = R.plan(record, T.TrainConfig())
    assert stages.index("text") < stages.index("ground") < stages.index("unet")
    assert (cfg.grounding_weight, cfg.separation_weight) == (0.1, 0.3)
    plain = {"seed": 1, "unet_steps": 3, "finetune_steps": 2}
    assert "ground" not in R.plan(plain, T.TrainConfig())[0][1]


def test_a_record_with_an_unknown_setting_is_refused():
    record = {"seed": 5, "finetune_steps": 2, "warp_factor": 9,
              "continued_from": {"seed": 1, "unet_steps": 3, "finetune_steps": 2}}
    with pytest.raises(ValueError, match="warp_factor"):
        R.cycles(record)
    with pytest.raises(ValueError, match="not a base run"):
        R.cycles({"seed": 5, "finetune_steps": 2})


@pytest.fixture(scope="module")
def two_cycles(tmp_path_factory):
    """A tiny base run and one grounded cycle with a trained text layer continued from
    it: a model whose studio.json records two cycles."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("history")
    T.run_all(root / "w0", root / "first", TINY)
    T.init_from(root / "w1", root / "first")
    cycle = dataclasses.replace(TINY, seed=9, finetune_steps=2, finetune_lr=1e-4, grounding_weight=0.1,
                                separation_weight=0.2, text_layers=1, text_lr=1e-4,
                                color_weights={"brown": 3.0}, finetune_noise_bias=0.8)
    T.run_all(root / "w1", root / "second", cycle, stages=("data", "latents", "text", "ground", "finetune",
                                                           "export"))
    return root


def _weights(folder, part):
    return (folder / part / "diffusion_pytorch_model.safetensors").read_bytes()


def test_replay_gives_back_the_recorded_model_bit_for_bit(two_cycles, tmp_path):
    source = two_cycles / "second"
    said = []
    out = R.replay(R.load_record(source), tmp_path / "work", tmp_path / "again", TINY, announce=said.append)
    assert len(said) == 2 and said[0].startswith("cycle 1 of 2: seed 1234") and "seed 9" in said[1]
    record = lambda folder: json.loads((folder / "studio.json").read_text())["training"]  # noqa: E731
    assert record(out) == record(source)
    # the second cycle drew more low-noise steps: recorded, and replayed with it (at the
    # default 1.5 the UNet would not come back bit for bit)
    assert record(source)["finetune_noise_bias"] == 0.8 and "finetune_noise_bias" not in record(out)["continued_from"]
    assert _weights(out, "unet") == _weights(source, "unet")
    assert _weights(out, "vae") == _weights(source, "vae")
    tuned = "text_encoder/tuned_layers.safetensors"
    assert (out / tuned).read_bytes() == (source / tuned).read_bytes()
    # the first cycle's export is kept in its work folder, as the source's first model
    assert _weights(tmp_path / "work" / "cycle-00" / "model", "unet") == _weights(two_cycles / "first", "unet")
    # run again: every cycle is found done
    said.clear()
    R.replay(R.load_record(source), tmp_path / "work", tmp_path / "again", TINY, announce=said.append)
    assert said == []


def test_a_replay_stopped_by_its_time_limit_resumes_instead_of_moving_on(two_cycles, tmp_path):
    said = []
    hurried = dataclasses.replace(TINY, max_minutes=1e-9)  # stops each UNet stage after its first step
    assert R.replay(R.load_record(two_cycles / "second"), tmp_path, tmp_path / "out", hurried,
                    announce=said.append) is None
    assert said[-1] == "cycle 1 stopped by --max-minutes before its last step; rerun the same command to go on"
    assert not (tmp_path / "cycle-00" / "model").exists() and not (tmp_path / "cycle-01").exists()
    said.clear()
    assert R.replay(R.load_record(two_cycles / "second"), tmp_path, tmp_path / "out", TINY,
                    announce=said.append) == tmp_path / "out"
    assert len(said) == 2  # cycle 1 resumed, then cycle 2
    assert json.loads((tmp_path / "out" / "studio.json").read_text())["training"]["seed"] == 9


def test_the_cli_replays_and_refuses_what_it_cannot(two_cycles, tmp_path):
    from typer.testing import CliRunner

    from imagestudio.cli import app

    def run(*args):
        result = CliRunner().invoke(app, ["train", *args])
        # the message as one line: rich wraps it in a box as wide as the terminal
        return result.exit_code, " ".join(result.output.replace("│", " ").split())

    code, said = run("--replay", str(tmp_path), "--out", str(tmp_path / "x"))
    assert code == 2 and "no studio.json to replay" in said, said
    code, said = run("--replay", str(two_cycles / "second"), "--init-from", str(two_cycles / "first"))
    assert code == 2 and "leave out --init-from and --stages" in said, said
    assert not (tmp_path / "x").exists()
    # what records leave out (VAE, decoder, batch) comes from the options
    code, said = run("--replay", str(two_cycles / "second"), "--work", str(tmp_path / "work"),
                     "--out", str(tmp_path / "x"), "--scenes", "999", "--vae-steps", "2", "--vae-full-steps", "1",
                     "--decoder-steps", "2", "--unet-batch", "2", "--threads", "1")
    assert code == 0, said
    assert "cycle 1 of 2: seed 1234" in said and "cycle 2 of 2: seed 9" in said
    record = lambda folder: json.loads((folder / "studio.json").read_text())["training"]  # noqa: E731
    assert record(tmp_path / "x") == record(two_cycles / "second")  # the recorded 12 scenes, not 999
