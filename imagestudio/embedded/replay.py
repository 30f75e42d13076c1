"""Replay a model's whole training history in one command.

The shipped weights are not one `imagestudio train` run: a base run and then several
fine-tune cycles, each continued (`--init-from`) from the export before it, with its own
seed and losses. Every export records its cycle in `studio.json` under `training`, with
the cycle before it under `continued_from`. This module reads that chain back and runs
it again, oldest cycle first, each in its own work folder: the recipe of the shipped
weights, from nothing, as one resumable command (`imagestudio train --replay`).

What the record does not hold (VAE and decoder steps, checkpoint interval, the UNet batch
of a cycle that trained at the default 64) comes from the caller's `TrainConfig`; what it
holds (seeds, scene counts, step counts, a UNet batch other than 64, UNet widths other
than the shipped ones, learning rates, loss weights, colour weights, trained text
layers) wins over it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Optional

from . import training as T

# Settings a cycle's record may hold; anything else in a record is refused rather than
# silently ignored, since a replay that drops a setting is not the same recipe.
RECORDED = ("seed", "scenes", "unet_steps", "unet_schedule", "unet_batch", "unet_channels", "finetune_steps",
            "finetune_schedule", "finetune_lr", "finetune_noise_bias", "grounding_weight", "binding_weight",
            "separation_weight", "text_layers", "text_lr", "color_weights")
# Settings that belong to one cycle only: a cycle whose record lacks them ran without
# them (the export writes them only when set), so they fall back to TrainConfig's
# defaults, not to what the caller or an earlier cycle had.
# (A later cycle's UNet widths are its source's, whatever its config says: init_from.)
PER_CYCLE = ("unet_channels", "unet_schedule", "finetune_schedule", "finetune_lr", "finetune_noise_bias",
             "grounding_weight", "binding_weight", "separation_weight", "text_layers", "text_lr", "color_weights")


def load_studio(source: Path) -> dict:
    """The studio.json of a model folder (or that file itself), with its training record."""
    path = source / "studio.json" if source.is_dir() else source
    if not path.is_file():
        raise ValueError(f"{source}: no studio.json to replay")
    try:
        studio = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not studio.get("training"):
        raise ValueError(f"{path}: has no training record")
    return studio


def load_record(source: Path) -> dict:
    """The `training` record of a model folder or of its studio.json."""
    return load_studio(source)["training"]


def cycles(record: dict) -> list[dict]:
    """The chain of cycles in `record`, oldest (the base run) first, each without its
    `continued_from`."""
    chain = []
    while record:
        chain.append({k: v for k, v in record.items() if k != "continued_from"})
        record = record.get("continued_from")
    chain.reverse()
    if "unet_steps" not in chain[0]:
        raise ValueError("the oldest cycle of the record is not a base run (it has no unet_steps)")
    for i, cycle in enumerate(chain):
        unknown = sorted(set(cycle) - set(RECORDED))
        if unknown:
            raise ValueError(f"cycle {i} records settings the replay does not know: {unknown}")
    return chain


def cycle_config(base: T.TrainConfig, cycle: dict) -> T.TrainConfig:
    """`base` (what records leave out) with this cycle's recorded settings."""
    defaults = T.TrainConfig()
    cleared = {name: getattr(defaults, name) for name in PER_CYCLE}
    return dataclasses.replace(base, **{**cleared, **cycle})


def plan(record: dict, base: T.TrainConfig) -> list[tuple[T.TrainConfig, tuple[str, ...]]]:
    """Each cycle's config and stages: the base run trains everything; a later cycle
    renders its own scenes and fine-tunes."""
    steps = []
    for i, cycle in enumerate(cycles(record)):
        cfg = cycle_config(base, cycle)
        # grounding data only when the cycle's losses need it (a from-scratch base run
        # may have used them too)
        ground = ("ground",) if cfg.uses_grounding else ()
        if i == 0:
            stages = ("data", "vae", "latents", "decoder", "text") + ground + ("unet", "finetune", "export")
        else:
            stages = ("data", "latents", "text") + ground + ("finetune", "export")
        steps.append((cfg, stages))
    return steps


def finished(work: Path, cfg: T.TrainConfig) -> bool:
    """Whether a cycle's UNet stages ran to their last step."""
    return (work / "unet.done").exists() and (cfg.finetune_steps <= 0 or (work / "finetune.done").exists())


def replay(record: dict, work: Path, out: Path, base: T.TrainConfig, progress: T.Progress = T._noop,
           studio: Optional[dict] = None, announce=lambda text: None) -> Optional[Path]:
    """Run every cycle of `record` in turn into `work/cycle-NN` (each exported to
    `work/cycle-NN/model`, the last one to `out`). Rerunning resumes: a cycle whose export
    is there is skipped, a cycle in progress resumes from its checkpoints. Returns `out`,
    or None when `base.max_minutes` stopped a cycle first."""
    steps = plan(record, base)
    previous: Optional[Path] = None
    for i, (cfg, stages) in enumerate(steps):
        cycle_work = work / f"cycle-{i:02d}"
        last = i == len(steps) - 1
        dest = out if last else cycle_work / "model"
        done = cycle_work / "replayed.json"
        if done.exists() and (dest / "studio.json").exists():
            previous = dest
            continue
        announce(f"cycle {i + 1} of {len(steps)}: seed {cfg.seed}, "
                 + (f"base UNet {cfg.unet_steps} steps + " if i == 0 else "")
                 + f"fine-tune {cfg.finetune_steps} steps")
        if previous is not None:
            T.init_from(cycle_work, previous)
        T.run_all(cycle_work, dest, cfg, progress, stages[:-1])
        if not finished(cycle_work, cfg):
            # --max-minutes stopped a UNet stage: exporting now would hand the next cycle
            # a half-trained UNet and mark this one done
            announce(f"cycle {i + 1} stopped by --max-minutes before its last step; "
                     "rerun the same command to go on")
            return None
        T.export(cycle_work, dest, cfg, studio if last else None)
        done.write_text(json.dumps(dataclasses.asdict(cfg), indent=2))
        previous = dest
    return out
