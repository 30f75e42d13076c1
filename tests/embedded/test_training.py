"""`imagestudio train`'s stages on a tiny budget: every stage runs, the export loads
offline through the ordinary StableDiffusionPipeline, the fine-tune starts from the base
UNet and resumes from its checkpoint."""

import dataclasses
import json

import pytest
import torch

from imagestudio.embedded import training as T


def test_high_noise_steps_keep_their_weight_in_the_fine_tune():
    snr = torch.tensor([1e-4, 0.5, 4.0, 99.0])
    base = T._loss_weights(snr, 5.0, "min-snr")
    ft = T._loss_weights(snr, 5.0, "min-snr+1")
    assert base[0] < 1e-3  # the base recipe ignored the layout steps
    assert ft[:3].tolist() == [1.0, 1.0, 1.0]  # x0 error at full weight up to snr 4
    assert ft[3] == pytest.approx(0.05)  # still clipped where only pixel detail is left


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    torch.set_num_threads(1)
    work = tmp_path_factory.mktemp("work")
    out = tmp_path_factory.mktemp("out") / "model"
    cfg = T.TrainConfig(scenes=12, vae_steps=2, vae_batch=2, vae_full_steps=1, decoder_steps=2,
                        unet_steps=3, unet_batch=2, finetune_steps=2, checkpoint_seconds=0)
    stages = []
    T.run_all(work, out, cfg, lambda stage, step, total, info: stages.append(stage))
    return work, out, cfg, stages


def test_every_stage_runs_and_writes_a_loss_log(tiny_run):
    work, out, cfg, stages = tiny_run
    assert {"data", "vae", "latents", "decoder", "text", "unet", "finetune"} <= set(stages)
    for name in ("vae", "unet", "finetune"):
        assert (work / f"{name}.ckpt").exists()
    assert (work / "unet.done").read_text() == "3"
    assert (work / "finetune.done").read_text() == "2"
    assert json.loads((out / "studio.json").read_text())["training"]["finetune_steps"] == 2


def test_fine_tune_starts_from_the_base_ema_and_is_what_ships(tiny_run):
    from diffusers import UNet2DConditionModel

    work, out, cfg, _ = tiny_run
    base = torch.load(work / "unet.ckpt", weights_only=False)["ema"]
    ft = torch.load(work / "finetune.ckpt", weights_only=False)["ema"]
    shipped = UNet2DConditionModel.from_pretrained(out / "unet").state_dict()
    key = "conv_in.weight"
    assert not torch.equal(ft[key], base[key])  # it trained
    # two small steps from the base: close to it, far from a fresh initialisation
    assert (ft[key] - base[key]).abs().max() < 0.05
    assert torch.equal(shipped[key].float(), ft[key].to(torch.float16).float())


def test_export_loads_offline_and_draws(tiny_run):
    from diffusers import StableDiffusionPipeline

    from imagestudio.embedded import _text_encoder_weights

    _, out, _, _ = tiny_run
    # the export holds the text encoder's config only; its weights come from the package
    link = out / "text_encoder" / "model.safetensors"
    if not link.exists():
        link.symlink_to(_text_encoder_weights())
    pipe = StableDiffusionPipeline.from_pretrained(out, local_files_only=True, safety_checker=None,
                                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    image = pipe("a red circle on the left", num_inference_steps=2, height=128, width=128,
                 generator=torch.Generator().manual_seed(0)).images[0]
    assert image.size == (128, 128)


def test_rerun_resumes_instead_of_starting_over(tiny_run):
    work, out, cfg, _ = tiny_run
    seen = []
    T.run_all(work, out, cfg, lambda stage, step, total, info: seen.append(stage))
    assert seen == []  # every stage found its result and was skipped


def test_continuing_an_exported_model_fine_tunes_it_and_keeps_its_record(tiny_run, tmp_path):
    from diffusers import UNet2DConditionModel

    _, first, cfg, _ = tiny_run
    work, second = tmp_path / "work", tmp_path / "second"
    T.init_from(work, first)
    # the continued cycle also grounds each object's words in its box, binds each object's
    # places to its words rather than the padding or its neighbour's (grounding.py) and
    # draws brown more often
    cfg = dataclasses.replace(cfg, grounding_weight=0.1, binding_weight=0.1, separation_weight=0.2,
                              color_weights={"brown": 3.0})
    T.run_all(work, second, cfg, stages=("data", "latents", "text", "ground", "finetune", "export"))
    rows = [json.loads(line) for line in (work / "finetune_loss.log").read_text().splitlines()]
    assert rows and all(0 <= r[k] <= 1 for r in rows for k in ("grounding", "binding", "separation"))
    start = UNet2DConditionModel.from_pretrained(first / "unet").state_dict()["conv_in.weight"].float()
    ft = torch.load(work / "finetune.ckpt", weights_only=False)["ema"]["conv_in.weight"]
    assert not torch.equal(ft, start) and (ft - start).abs().max() < 0.05  # trained on from it
    record = json.loads((second / "studio.json").read_text())["training"]
    assert record["finetune_steps"] == 2 and record["finetune_lr"] == cfg.finetune_lr
    assert record["continued_from"]["finetune_steps"] == 2  # the first run's own record
    assert record["color_weights"] == {"brown": 3.0}  # so the eval can re-render its captions
    assert record["grounding_weight"] == 0.1 and record["binding_weight"] == 0.1
    assert record["separation_weight"] == 0.2
    assert "finetune_noise_bias" not in record  # drawn at the default, as every cycle before it
    # rerunning the same command resumes: the fine-tune is not thrown away
    T.init_from(work, first)
    assert (work / "finetune.done").exists() and (work / "latents.pt").exists()


def test_the_cli_continues_a_model_without_retraining_its_vae(tiny_run, tmp_path):
    """`imagestudio train --init-from` without --stages runs one more fine-tune cycle on
    new data: no VAE, decoder or base UNet stage (those would redo hours of work and
    change the model's decoder)."""
    from typer.testing import CliRunner

    from imagestudio.cli import app

    _, first, _, _ = tiny_run
    work, out = tmp_path / "work", tmp_path / "out"
    result = CliRunner().invoke(app, ["train", "--init-from", str(first), "--work", str(work), "--out", str(out),
                                      "--seed", "9", "--scenes", "12", "--unet-batch", "2", "--finetune-steps", "1",
                                      "--finetune-noise-bias", "0.9", "--threads", "1"])
    assert result.exit_code == 0, result.output
    logs = sorted(p.name for p in work.glob("*_loss.log"))
    assert logs == ["finetune_loss.log"], logs
    record = json.loads((out / "studio.json").read_text())["training"]
    assert record["seed"] == 9 and record["finetune_steps"] == 1 and "continued_from" in record
    assert record["finetune_noise_bias"] == 0.9 and "finetune_noise_bias" not in record["continued_from"]
    vae = lambda folder: (folder / "vae" / "diffusion_pytorch_model.safetensors").read_bytes()  # noqa: E731
    assert vae(out) == vae(first)  # the VAE ships unchanged


def test_without_a_base_stage_the_fine_tune_trains_a_fresh_unet(tmp_path):
    """--unet-steps 0: the fine-tune's loss from the first step on a freshly initialised
    UNet (the from-scratch recipe measured in the README), recorded so a replay redoes it."""
    from imagestudio.embedded import replay

    torch.set_num_threads(1)
    work, out = tmp_path / "work", tmp_path / "out"
    cfg = T.TrainConfig(scenes=12, vae_steps=2, vae_batch=2, vae_full_steps=1, decoder_steps=2,
                        unet_steps=0, unet_batch=2, finetune_steps=2, finetune_lr=6e-4, checkpoint_seconds=0)
    T.run_all(work, out, cfg, stages=("data", "vae", "latents", "text", "unet", "finetune", "export"))
    assert (work / "unet.done").read_text() == "0"
    start = torch.load(work / "unet.ckpt", weights_only=False)
    fresh, _ = T._new_unets(cfg.seed + 1, cfg.unet_channels)
    assert start["step"] == 0 and torch.equal(start["ema"]["conv_in.weight"], fresh.state_dict()["conv_in.weight"])
    ft = torch.load(work / "finetune.ckpt", weights_only=False)
    assert ft["step"] == 2 and not torch.equal(ft["model"]["conv_in.weight"], start["model"]["conv_in.weight"])
    record = json.loads((out / "studio.json").read_text())["training"]
    assert record["unet_steps"] == 0 and record["finetune_steps"] == 2 and record["finetune_lr"] == 6e-4
    assert record["unet_batch"] == 2  # not the default 64: a replay must draw the same batches
    ((replayed, stages),) = replay.plan(record, T.TrainConfig())
    assert replayed.unet_steps == 0 and replayed.finetune_lr == 6e-4 and "unet" in stages
    assert replayed.unet_batch == 2
    # no text layer trained: the folder loads as it is, with the package's encoder
    from transformers import BertModel

    assert (out / "text_encoder" / "model.safetensors").is_symlink()
    BertModel.from_pretrained(out / "text_encoder")


def test_a_smaller_unet_trains_exports_and_continues_at_its_own_widths(tmp_path):
    """--unet-channels 16,32,64,128: the half-width UNet of the from-scratch probes. The
    export loads through the ordinary pipeline at those widths, the record holds them
    for a replay, and a cycle continued from it keeps them (its own config says nothing)."""
    from diffusers import StableDiffusionPipeline

    from imagestudio.embedded import replay

    torch.set_num_threads(1)
    half = (16, 32, 64, 128)
    work, out = tmp_path / "work", tmp_path / "out"
    cfg = T.TrainConfig(scenes=12, vae_steps=2, vae_batch=2, vae_full_steps=1, decoder_steps=2,
                        unet_steps=0, unet_batch=2, unet_channels=half, finetune_steps=2, checkpoint_seconds=0)
    T.run_all(work, out, cfg, stages=("data", "vae", "latents", "text", "unet", "finetune", "export"))
    pipe = StableDiffusionPipeline.from_pretrained(out, safety_checker=None)
    assert tuple(pipe.unet.config.block_out_channels) == half
    shipped_size = sum(p.numel() for p in T._new_unets(0, T.TrainConfig.unet_channels)[0].parameters())
    assert sum(p.numel() for p in pipe.unet.parameters()) < shipped_size / 2
    record = json.loads((out / "studio.json").read_text())["training"]
    assert record["unet_channels"] == list(half)
    ((replayed, _),) = replay.plan(record, T.TrainConfig())
    assert tuple(replayed.unet_channels) == half
    # a replay of a shipped-width record does not take the caller's widths
    plain = {k: v for k, v in record.items() if k != "unet_channels"}
    ((default, _),) = replay.plan(plain, dataclasses.replace(T.TrainConfig(), unet_channels=half))
    assert tuple(default.unet_channels) == T.TrainConfig.unet_channels

    cont_work, cont_out = tmp_path / "cont", tmp_path / "cont-out"
    T.init_from(cont_work, out)
    cont = T.TrainConfig(scenes=12, unet_batch=2, finetune_steps=1, checkpoint_seconds=0)
    T.run_all(cont_work, cont_out, cont, stages=("data", "latents", "text", "finetune", "export"))
    again = StableDiffusionPipeline.from_pretrained(cont_out, safety_checker=None)
    assert tuple(again.unet.config.block_out_channels) == half
    assert "unet_channels" not in json.loads((cont_out / "studio.json").read_text())["training"]


@pytest.mark.parametrize("stage", ["finetune", "unet"])
def test_a_unet_stage_stopped_early_is_recorded_so_its_replay_runs_the_same_steps(tiny_run, tmp_path, stage):
    """--max-minutes stopped the fourth probe's first cycle at step 10,886 of a 12,500-step
    cosine: the record keeps both, and a replay of it runs those steps on that schedule,
    giving back the same UNet (before, it ran a 10,886-step schedule). A base stage stopped
    early (its export then ships the base UNet) recorded the steps asked for, so a replay
    trained longer than the shipped UNet had."""
    import shutil

    from imagestudio.embedded import replay

    work0, _, cfg, _ = tiny_run
    cfg = dataclasses.replace(cfg, **{f"{stage}_steps": 4})
    steps_key, schedule_key = f"{stage}_steps", f"{stage}_schedule"
    # a stopped base stage leaves no fine-tune; a stopped fine-tune keeps its base
    dropped = ("unet.*", "finetune*") if stage == "unet" else ("finetune*",)

    def copy(name):
        work = tmp_path / name
        shutil.copytree(work0, work, ignore=shutil.ignore_patterns(*dropped))
        return work

    class Stop(Exception):
        pass

    def stop_after_2(name, step, total, info):
        if name == stage and step > 2:
            raise Stop  # step 2 was checkpointed (checkpoint_seconds=0), as --max-minutes does

    stopped = copy("stopped")
    with pytest.raises(Stop):
        T.run_all(stopped, stopped / "out", cfg, stop_after_2, stages=(stage,))
    T.export(stopped, stopped / "out", cfg)
    record = json.loads((stopped / "out" / "studio.json").read_text())["training"]
    assert (record[steps_key], record[schedule_key]) == (2, 4)
    if stage == "unet":
        assert record["finetune_steps"] == 0  # what ships is the base UNet
    again_cfg = replay.cycle_config(cfg, {k: v for k, v in record.items() if k in replay.RECORDED})
    again = copy("again")
    T.run_all(again, again / "out", again_cfg, stages=(stage,))
    assert (again / f"{stage}.done").read_text() == "2"
    ema = lambda work: torch.load(work / f"{stage}.ckpt", weights_only=False)["ema"]  # noqa: E731
    assert all(torch.equal(a, b) for a, b in zip(ema(stopped).values(), ema(again).values()))
    # resumed to the end of its schedule, it records the steps asked for and no schedule
    T.run_all(stopped, stopped / "out", cfg, stages=(stage, "export"))
    record = json.loads((stopped / "out" / "studio.json").read_text())["training"]
    assert record[steps_key] == 4 and schedule_key not in record
