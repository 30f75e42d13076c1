"""Train a small ControlNet for a Stable-Diffusion-architecture model on the
renderer's scenes, and measure whether generations follow their control.

The ControlNet starts as a copy of the model's UNet encoder (diffusers'
`ControlNetModel.from_unet`, zero convolutions, so it starts with no effect)
and learns, with the UNet, VAE and text encoder frozen, to predict the
model's own training target (noise or v) from a scene's latents, its caption
and its preprocessed control image (canny edges or a scribble).

    python -m imagestudio.engine.control_train --model embedded --kind canny --steps 3000 \
        --out data/models/ControlNet/embedded-canny
    python -m imagestudio.engine.control_train --model embedded --eval data/models/ControlNet/embedded-canny

`evaluate` answers the question that matters: on held-out scenes, prompted
with colour and kind but no position, does the controlled image put edges
where the control has them (edge overlap) and the object where the control
draws it (the embedded judge's position), compared with the same seeds
without control?
"""

from __future__ import annotations

import argparse
import math
import random
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from PIL import Image, ImageOps

from .control import edge_overlap, preprocess


def conditioning_channels(vae_scale: int) -> tuple[int, ...]:
    """ControlNet's image encoder must shrink the control image by the VAE's
    factor: one stride-2 stage per factor of two."""
    stages = int(round(math.log2(vae_scale)))
    return tuple(16 * 2 ** i for i in range(stages + 1))


def _scenes(n: int, seed: int, single: bool = False):
    from ..embedded import renderer

    rng = random.Random(seed)
    return [renderer.random_scene(rng, n_objects=1 if single else None) for _ in range(n)], rng


def train_controlnet(model_dir: Path, out: Path, kind: str = "canny", steps: int = 2000, batch: int = 16,
                     lr: float = 2e-4, seed: int = 0, caption_dropout: float = 0.1, noise_bias: float = 1.0,
                     progress: Optional[Callable[[int, int, float], None]] = None,
                     max_minutes: float = 0.0, save_every_minutes: float = 10.0, resume: bool = False) -> Path:
    import torch
    import torch.nn.functional as F
    from diffusers import ControlNetModel, DDPMScheduler, StableDiffusionPipeline

    from ..embedded import renderer
    from ..embedded.training import biased_timesteps

    torch.manual_seed(seed)
    pipe = StableDiffusionPipeline.from_pretrained(str(model_dir), safety_checker=None, requires_safety_checker=False)
    unet, vae = pipe.unet.eval(), pipe.vae.eval()
    for module in (unet, vae, pipe.text_encoder):
        module.requires_grad_(False)
    out = Path(out)
    previous = 0
    if resume and (out / "config.json").exists():
        # continue from the last save (weights only: AdamW's moments warm up again in a few steps)
        # .float(): a shipped folder is fp16, and training needs fp32 weights
        net = ControlNetModel.from_pretrained(out).float()
        note = (out / "training.txt").read_text() if (out / "training.txt").exists() else ""
        previous = int(note.split("steps=")[1].split()[0]) if "steps=" in note else 0
    else:
        net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=conditioning_channels(pipe.vae_scale_factor))
    net.train()
    noise_schedule = DDPMScheduler.from_config(pipe.scheduler.config)
    prediction = noise_schedule.config.prediction_type
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    size = renderer.SIZE
    rng = random.Random(seed + previous)  # fresh scenes (and noise, below) after a resume
    torch.manual_seed(seed + previous)
    started, ema = time.time(), None
    last_save = started
    done = 0

    def save() -> None:
        # saved as it goes, so a run stopped on a busy CPU keeps what it learnt
        net.save_pretrained(out)
        (out / "training.txt").write_text(
            f"kind={kind} steps={previous + done} (this run {done} of {steps}) batch={batch} lr={lr} noise_bias={noise_bias} seed={seed} "
            f"seconds={time.time() - started:.0f} final_loss_ema={ema if ema is None else round(ema, 4)}\n")

    for step in range(steps):
        scenes = [renderer.random_scene(rng) for _ in range(batch)]
        images = [renderer.render(s).convert("RGB") for s in scenes]
        captions = ["" if rng.random() < caption_dropout else renderer.caption(s, rng) for s in scenes]
        pixels = torch.from_numpy(np.stack([np.asarray(im) for im in images])).permute(0, 3, 1, 2).float() / 127.5 - 1
        control = torch.from_numpy(np.stack([np.asarray(preprocess(kind, im, (size, size))) for im in images]))
        control = control.permute(0, 3, 1, 2).float() / 255.0
        with torch.no_grad():
            latents = vae.encode(pixels).latent_dist.mean * vae.config.scaling_factor
            text, _ = pipe.encode_prompt(captions, "cpu", 1, False)
        noise = torch.randn_like(latents)
        t = biased_timesteps(batch, noise_schedule.config.num_train_timesteps, noise_bias)
        noisy = noise_schedule.add_noise(latents, noise, t)
        target = noise if prediction == "epsilon" else noise_schedule.get_velocity(latents, noise, t)
        down, mid = net(noisy, t, encoder_hidden_states=text, controlnet_cond=control, return_dict=False)
        predicted = unet(noisy, t, encoder_hidden_states=text, down_block_additional_residuals=down,
                         mid_block_additional_residual=mid).sample
        loss = F.mse_loss(predicted, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        done = step + 1
        if progress:
            progress(done, steps, ema)
        if max_minutes and time.time() - started > max_minutes * 60:
            break
        if time.time() - last_save > save_every_minutes * 60:
            save()
            last_save = time.time()
    save()
    return out


def ship(src: Path, dest: Path) -> Path:
    """An fp16 copy of a trained ControlNet folder (half the size; the engine
    loads it at the pipeline's dtype), with its training note."""
    import shutil

    import torch
    from diffusers import ControlNetModel

    net = ControlNetModel.from_pretrained(str(src))
    net.to(torch.float16).save_pretrained(dest)
    if (Path(src) / "training.txt").exists():
        shutil.copy(Path(src) / "training.txt", Path(dest) / "training.txt")
    return Path(dest)


def evaluate(engine, model: str, controlnet: str, kind: str = "canny", n: int = 16, seed: int = 4242,
             steps: int = 20) -> dict:
    """Held-out single-object scenes, prompted as "a <colour> <kind>" (no
    position): edge overlap, judged position and judged object (kind, colour
    and position all right), with and without control."""
    from ..embedded import renderer
    from ..request import Control, GenerationRequest, image_to_data_uri

    scenes, _ = _scenes(n, seed, single=True)
    judge = _judge()
    stats = {name: {"edge_f1": [], "edge_recall": [], "edge_precision": [], "position": [], "object": []}
             for name in ("controlled", "free")}
    for i, scene in enumerate(scenes):
        picture = renderer.render(scene).convert("RGB")
        obj = scene.objects[0]
        base = dict(prompt=f"a {obj.color} {obj.kind}", model=model, seed=seed + i, steps=steps)
        edges = preprocess("canny", picture, picture.size)
        # "sketch": what a user would draw of the scene, its edges as black
        # lines on white paper, handed to the scribble preprocessor
        source = ImageOps.invert(edges) if kind == "sketch" else picture
        control = Control(type="scribble" if kind == "sketch" else kind, image=image_to_data_uri(source),
                          model=controlnet)
        runs = {"free": GenerationRequest(**base), "controlled": GenerationRequest(**base, control=control)}
        for name, request in runs.items():
            image = engine.generate(request).images[0].image
            scores = edge_overlap(image, edges)
            for key in ("f1", "recall", "precision"):
                stats[name][f"edge_{key}"].append(scores[key])
            if judge is not None:
                seen = judge(image)["objects"]
                stats[name]["position"].append(obj.position in {o["position"] for o in seen})
                # the whole object right: kind, colour and place
                stats[name]["object"].append(any((o["kind"], o["color"], o["position"]) ==
                                                 (obj.kind, obj.color, obj.position) for o in seen))
    return {name: {k: round(float(np.mean(v)), 3) for k, v in values.items() if v} for name, values in stats.items()}


def _judge():
    try:
        from ..embedded import judge
    except ImportError:
        return None
    return judge.analyze if judge.WEIGHTS.exists() else None


def main(argv: Optional[list[str]] = None) -> None:
    import torch

    from ..embedded import model_dir
    from .catalog import Catalog
    from .core import Engine

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="embedded", help="'embedded' or a diffusers folder")
    parser.add_argument("--kind", choices=("canny", "scribble", "sketch"), default="canny",
                        help="training: canny or scribble; --eval also takes sketch (scene edges drawn as lines)")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--noise-bias", type=float, default=1.0, help=">1: more high-noise training steps")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-minutes", type=float, default=0.0, help="stop (and save) after this long")
    parser.add_argument("--resume", action="store_true", help="continue from the ControlNet saved in --out")
    parser.add_argument("--ship", type=Path, help="only write an fp16 copy of the trained --out ControlNet here (what the repo ships); no training")
    parser.add_argument("--out", type=Path, help="where to save the ControlNet folder")
    parser.add_argument("--eval", type=Path, help="evaluate this ControlNet folder (inside <models>/ControlNet)")
    parser.add_argument("-n", type=int, default=16)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    folder = model_dir() if args.model == "embedded" else Path(args.model)
    if args.out and not args.ship:
        def report(step, total, loss):
            if step % 50 == 0 or step == total:
                print(f"step {step}/{total} loss {loss:.4f}", flush=True)

        print(train_controlnet(folder, args.out, args.kind, args.steps, args.batch, lr=args.lr,
                               noise_bias=args.noise_bias, progress=report,
                               max_minutes=args.max_minutes, resume=args.resume))
    if args.ship:
        print(ship(args.out, args.ship))
    if args.eval:
        models = args.eval.parent.parent
        engine = Engine(Catalog(models))
        name = "embedded" if args.model == "embedded" else Path(args.model).name
        print(evaluate(engine, name, args.eval.name, args.kind, n=args.n))


if __name__ == "__main__":
    main()
