"""`imagestudio train` (reproduce the embedded model) and `imagestudio eval` (prompt
adherence scored by the judge)."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import List, Optional

import typer

STAGES = ("data", "vae", "latents", "decoder", "text", "ground", "unet", "finetune", "export")
# a continued model keeps its VAE (decoder included) and base UNet: new data, its latents
# and caption embeddings, then one more fine-tune cycle
CONTINUE_STAGES = ("data", "latents", "text", "ground", "finetune", "export")


def _default_work() -> Path:
    root = os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))
    return Path(root) / "imagestudio" / "train-embedded"


def _set_threads(threads: int) -> None:
    import torch

    if threads > 0:
        torch.set_num_threads(threads)


def train(
    work: Path = typer.Option(None, help="Work folder for data, checkpoints and loss logs "
                              "(default ~/.cache/imagestudio/train-embedded). Rerun to resume."),
    out: Path = typer.Option(None, help="Where to write the diffusers folder (default: the shipped "
                             "imagestudio/embedded/weights)."),
    seed: int = typer.Option(1234, help="Seed for data, initialisation and sampling."),
    scenes: int = typer.Option(20000, help="Rendered training scenes."),
    vae_steps: int = typer.Option(1300, help="VAE steps on 64x64 crops."),
    vae_full_steps: int = typer.Option(40, help="VAE steps on full 128x128 images."),
    decoder_steps: int = typer.Option(10200, help="Decoder-only steps on the frozen encoder's latents."),
    unet_steps: int = typer.Option(2300, help="Base UNet steps (the learning-rate schedule spans them); "
                                   "0: no base stage, the fine-tune trains a fresh UNet from its first step."),
    unet_batch: int = typer.Option(64),
    unet_channels: str = typer.Option("32,64,128,192", "--unet-channels", help="The UNet's widths, one "
                                      "per level (the shipped UNet's by default; e.g. 16,32,64,128 for "
                                      "one with about half the step time). Recorded in studio.json."),
    finetune_steps: int = typer.Option(3600, help="Fine-tune steps after the base "
                                       "UNet (weight 1 at high noise, more high-noise steps); 0 skips."),
    finetune_lr: float = typer.Option(3e-4, help="Fine-tune peak learning rate (cosine to a fifth "
                                      "of it); lower it to continue an already fine-tuned model."),
    finetune_noise_bias: float = typer.Option(1.5, "--finetune-noise-bias", help="How the fine-tune "
                                              "draws its noise levels: above 1 more near pure noise (where "
                                              "the layout is decided), 1 uniform, below 1 more at low noise "
                                              "(where img2img and inpainting finish)."),
    grounding_weight: float = typer.Option(0.0, "--grounding-weight", help="Weight of the token-"
                                           "grounding loss in the fine-tune (each object's words attend "
                                           "to its box); 0: the plain recipe."),
    binding_weight: float = typer.Option(0.0, "--binding-weight", help="Weight of the binding loss "
                                         "in the fine-tune (an object's places attend to its own words, "
                                         "not the padding or the other objects'); 0: off."),
    separation_weight: float = typer.Option(0.0, "--separation-weight", help="Weight of the separation "
                                            "loss in the fine-tune (an object's places read its own words "
                                            "rather than the other objects'); 0: off."),
    text_layers: int = typer.Option(0, "--text-layers", help="Train the text encoder's last N layers "
                                    "with the fine-tune (shipped as a small file next to its config); "
                                    "0: the package's frozen encoder."),
    text_lr: float = typer.Option(5e-5, "--text-lr", help="Peak learning rate of the trained text layers."),
    color_weights: str = typer.Option("", "--color-weights", help="Draw some colours more often in "
                                      "this run's data, e.g. 'brown=3,purple=3' (others weigh 1); "
                                      "recorded in studio.json."),
    max_minutes: float = typer.Option(0.0, help="Stop the UNet stage after this many minutes "
                                      "(checkpointed; rerun to continue). 0: no limit."),
    stages: Optional[str] = typer.Option(None, help=f"Comma-separated stages to run (default: all; "
                                         f"with --init-from: {','.join(CONTINUE_STAGES)})."),
    init_from: Optional[Path] = typer.Option(None, "--init-from", help="Continue an exported model "
                                             "(e.g. the shipped one): its VAE and UNet seed the work "
                                             "folder, then a new fine-tune cycle runs."),
    replay: Optional[Path] = typer.Option(None, "--replay", help="Run a model's whole recorded training "
                                          "history again (a model folder or its studio.json, e.g. "
                                          "imagestudio/embedded/weights): the base run, then each fine-tune "
                                          "cycle from the export before it, with the seeds and settings its "
                                          "studio.json records."),
    judge: bool = typer.Option(False, "--judge", help="Also retrain the evaluator's judge."),
    judge_steps: int = typer.Option(2500),
    threads: int = typer.Option(0, help="torch threads (0: torch's default)."),
    device: str = typer.Option("auto", help="Where the networks train: cpu, cuda, cuda:1, ... "
                               "(auto: the GPU when torch sees one, else the CPU)."),
) -> None:
    """Reproduce the embedded model from a seed: data, VAE, UNet, export (resumable)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from ..embedded import WEIGHTS_DIR
    from ..embedded import judge as judge_mod
    from ..embedded import replay as replay_mod
    from ..embedded.training import TrainConfig, init_from as seed_work, run_all

    _set_threads(threads)
    work = work or _default_work()
    out = out or WEIGHTS_DIR
    cfg = TrainConfig(seed=seed, scenes=scenes, vae_steps=vae_steps, vae_full_steps=vae_full_steps,
                      decoder_steps=decoder_steps,
                      unet_steps=unet_steps, unet_batch=unet_batch,
                      unet_channels=_parse_channels(unet_channels), finetune_steps=finetune_steps,
                      finetune_lr=finetune_lr, finetune_noise_bias=finetune_noise_bias,
                      max_minutes=max_minutes,
                      grounding_weight=grounding_weight, binding_weight=binding_weight,
                      separation_weight=separation_weight, text_layers=text_layers, text_lr=text_lr,
                      color_weights=_parse_weights(color_weights), device=_device(device))
    record = None
    if replay is not None:
        if init_from is not None or stages is not None:
            raise typer.BadParameter("--replay runs every recorded cycle itself; leave out --init-from "
                                     "and --stages", param_hint="--replay")
        try:
            recorded = replay_mod.load_studio(replay)
            record = recorded.pop("training")
            replay_mod.cycles(record)  # refuse an unreadable chain before any work starts
        except ValueError as err:
            raise typer.BadParameter(str(err), param_hint="--replay") from None
        stages = ""
    if stages is None:
        stages = ",".join(CONTINUE_STAGES if init_from is not None else STAGES)
    chosen = tuple(s.strip() for s in stages.split(",") if s.strip())
    bad = [s for s in chosen if s not in STAGES]
    if bad:
        raise typer.BadParameter(f"unknown stage(s) {bad}; choose from {STAGES}")
    t0 = time.time()
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TextColumn("{task.fields[loss]}"), TimeElapsedColumn(), TimeRemainingColumn()) as bar:
        tasks: dict[str, int] = {}

        def progress(stage: str, step: int, total: int, info: dict) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total, loss="")
            loss = f"loss {info['loss']:.4f}" if "loss" in info else ""
            bar.update(tasks[stage], completed=step, total=total, loss=loss)

        if judge:
            # The judge is independent of the model (its own seeds): 2500 steps, then a
            # low-learning-rate pass on new scenes, as shipped.
            judge_mod.train_judge(steps=judge_steps, seed=99,
                                  progress=lambda s, n, l: progress("judge", s, n, {"loss": l}))
            judge_mod.train_judge(steps=1200, seed=123, lr=5e-4, init=judge_mod.WEIGHTS,
                                  progress=lambda s, n, l: progress("judge-finetune", s, n, {"loss": l}))
        if record is not None:
            # the replayed model is used as the recorded one was (its guidance, regions, ...)
            replay_mod.replay(record, work, out, cfg, progress, studio=recorded, announce=bar.console.print)
        else:
            if init_from is not None:
                if not (init_from / "unet" / "config.json").exists():
                    raise typer.BadParameter(f"{init_from} is not an exported diffusers model folder")
                seed_work(work, init_from)
            run_all(work, out, cfg, progress, chosen)
    typer.echo(f"done in {(time.time() - t0) / 60:.1f} min; loss logs in {work}; model in {out}")


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        torch.empty(0, device=name)
    except (RuntimeError, AssertionError) as err:  # no such device, or a torch built without it
        raise typer.BadParameter(f"{name!r} cannot be used here: {err}", param_hint="--device") from None
    return name


def _parse_channels(text: str) -> tuple:
    """'16,32,64,128' -> (16, 32, 64, 128): four levels (the block types are fixed), each a
    multiple of 16 (its GroupNorm groups), the two attention levels of 32 (their heads)."""
    try:
        widths = tuple(int(p) for p in text.split(","))
    except ValueError:
        widths = ()
    if len(widths) != 4 or any(w <= 0 or w % 16 for w in widths) or any(w % 32 for w in widths[2:]):
        raise typer.BadParameter(f"{text!r}: expected four widths, e.g. 32,64,128,192: each a multiple "
                                 "of 16, the last two of 32", param_hint="--unet-channels")
    return widths


def _parse_weights(text: str) -> Optional[dict]:
    """'brown=3,purple=2.5' -> {'brown': 3.0, 'purple': 2.5} (None when empty)."""
    from ..embedded import renderer

    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        name = name.strip()
        if name not in renderer.COLORS:
            raise typer.BadParameter(f"unknown colour {name!r}; choose from {', '.join(renderer.COLORS)}",
                                     param_hint="--color-weights")
        try:
            out[name] = float(value)
        except ValueError:
            raise typer.BadParameter(f"{part!r}: expected COLOUR=NUMBER", param_hint="--color-weights") from None
        if not out[name] > 0:
            raise typer.BadParameter(f"{part!r}: the weight must be above 0", param_hint="--color-weights")
    return out or None


def evaluate(
    model: str = typer.Option("embedded", "--model", help="Catalog model name (generated through the "
                              "studio's engine), or a diffusers folder. 'embedded' uses diffusers directly."),
    models_dir: Optional[Path] = typer.Option(None, envvar="IMAGESTUDIO_MODELS", help="Models folder of the catalog."),
    images: int = typer.Option(32, "--images", help="Prompts per set (single, two, paraphrase) and prompt seed."),
    steps: int = typer.Option(20),
    guidance: Optional[float] = typer.Option(None, help="Default: the model's studio.json."),
    seed: List[int] = typer.Option([777], help="Seed of the prompt sets; repeat it (--seed 777 "
                                   "--seed 778 --seed 779) to score over each seed's prompts together."),
    batch: int = typer.Option(8),
    judge_images: int = typer.Option(400, help="Rendered images for the judge's own accuracy."),
    threads: int = typer.Option(0, help="torch threads (0: torch's default)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    grid: Optional[Path] = typer.Option(None, help="Also save a grid of the generated images here."),
    showcase: Optional[Path] = typer.Option(None, help="Also save the README's showcase grid (16 fixed prompts) here."),
    edits: int = typer.Option(0, help="Also check img2img (strength 0.3) and inpaint recolouring "
                              "on this many rendered scenes."),
) -> None:
    """Prompt adherence of a model, scored by the judge (an independent classifier)."""
    from ..embedded import evaluate as ev

    if edits and int(steps * ev.EDIT_STRENGTH) < 1:
        # diffusers' img2img runs int(steps * strength) steps: none at all below 4
        raise typer.BadParameter(f"the edit checks run img2img at strength {ev.EDIT_STRENGTH}, which needs "
                                 f"--steps {math.ceil(1 / ev.EDIT_STRENGTH)} or more", param_hint="--edits")
    _set_threads(threads)
    studio = None
    if model == "embedded" or Path(model).is_dir():
        folder = _resolve_model(model)
        generate = ev.diffusers_generator(folder, steps=steps, guidance=guidance)
        if model == "embedded":
            # the two-object set once more as users get it: the engine, regions from the prompt
            studio = ev.engine_generator(model, models_dir, steps=steps, guidance=guidance, auto_regions=True)
    else:
        folder = None
        generate = ev.engine_generator(model, models_dir, steps=steps, guidance=guidance)
        batch = 1
    # a catalog model stored as a diffusers folder: the edit checks run diffusers' img2img
    # and inpaint pipelines on it, and its studio.json (a model trained here) says which
    # captions it saw; a model without one saw none of the renderer's captions, and
    # excluding the embedded model's costs nothing
    stored = folder or _catalog_folder(model, models_dir, required=bool(edits))
    has_record = stored is not None and (stored / "studio.json").exists()
    result = ev.evaluate(generate, n_per_set=images, batch=batch, seed=seed,
                         judge_images=judge_images,
                         exclude=ev.all_training_captions(stored if has_record else _resolve_model("embedded")),
                         keep_images=grid is not None, studio=studio)
    result = {"model": model, **result, "steps": steps}
    if showcase is not None:
        showcase.parent.mkdir(parents=True, exist_ok=True)
        ev.showcase_grid(generate, showcase)
    if edits:
        studio = ev.engine_inpainter(steps=steps, guidance=guidance) if model == "embedded" else None
        result.update(ev.edit_checks(stored, n=edits, steps=steps, guidance=guidance, studio=studio))
    import torch

    result["threads"] = torch.get_num_threads()
    if grid is not None:
        _save_grid(result.pop("_images"), grid)
    if as_json:
        typer.echo(json.dumps(result))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"eval: {model}")
        table.add_column("metric")
        table.add_column("value")
        for k, v in result.items():
            table.add_row(k, str(v))
        Console().print(table)


def _catalog_folder(name: str, models_dir: Optional[Path], required: bool) -> Optional[Path]:
    """The diffusers folder of catalog model `name`; None for another kind of file, or
    a clear refusal when the edit checks (`required`) need the folder."""
    from ..engine.catalog import Catalog

    info = Catalog(models_dir).get(name)
    if info.source == "diffusers":
        return Path(info.path)
    if required:
        raise typer.BadParameter(f"{name} is a {info.source.replace('_', '-')} model: --edits needs a "
                                 "diffusers folder (pass the folder itself, or convert it)", param_hint="--edits")
    return None


def _resolve_model(name: str) -> Path:
    from ..embedded import model_dir

    return model_dir() if name == "embedded" else Path(name)


def _save_grid(images: dict, path: Path) -> None:
    from PIL import Image

    rows = list(images.values())
    cols = min(8, max(len(r) for r in rows))
    size = rows[0][0][1].width
    grid = Image.new("RGB", (cols * size, len(rows) * size), "white")
    for r, row in enumerate(rows):
        for c, (_, im) in enumerate(row[:cols]):
            grid.paste(im, (c * size, r * size))
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("eval")(evaluate)
