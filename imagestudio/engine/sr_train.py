"""Train and measure the studio's own upscaler (`upscale.studio_net`).

Training pictures: the sample photos that ship with scikit-image and
scikit-learn (skipped when scikit-learn is not installed), plus scenes from the
embedded model's renderer. Low-resolution
inputs are the pictures shrunk with PIL's bicubic filter. Held out (never
trained on): skimage `coffee`, scikit-learn `flower.jpg` and renderer scenes
drawn from a separate seed.

    python -m imagestudio.engine.sr_train --scale 2 --steps 3000   # ~4 min, 1 thread
    python -m imagestudio.engine.sr_train --scale 4 --steps 5000   # ~10 min
    python -m imagestudio.engine.sr_train --scale 4 --eval-only
"""

from __future__ import annotations

import argparse
import math
import random
import time
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from .upscale import load_studio, run_tiled, studio_net, studio_weights

TRAIN_PHOTOS = ("astronaut", "chelsea", "rocket", "hubble_deep_field", "colorwheel", "immunohistochemistry",
                "retina", "cat", "china")
HELD_OUT_PHOTOS = ("coffee", "flower")


def photo(name: str) -> Image.Image:
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        return Image.fromarray(load_sample_image(f"{name}.jpg"))
    import skimage.data

    return Image.fromarray(getattr(skimage.data, name)()).convert("RGB")


def photos(names) -> list[Image.Image]:
    """The named sample photos; scikit-learn's two are skipped when it is not installed."""
    found = []
    for name in names:
        try:
            found.append(photo(name))
        except ImportError:
            continue
    return found


def scenes(n: int, seed: int) -> list[Image.Image]:
    try:
        from ..embedded import renderer
    except ImportError:  # the renderer ships with the embedded model
        return []
    rng = random.Random(seed)
    return [renderer.render(renderer.random_scene(rng)).convert("RGB") for _ in range(n)]


def shrink(image: Image.Image, scale: int) -> Image.Image:
    """The degradation the network learns to undo: a bicubic downscale."""
    w, h = image.width // scale * scale, image.height // scale * scale
    image = image.crop((0, 0, w, h))
    return image.resize((w // scale, h // scale), Image.BICUBIC)


def psnr(a: np.ndarray, b: np.ndarray, border: int) -> float:
    a = a[border:-border, border:-border].astype(np.float64)
    b = b[border:-border, border:-border].astype(np.float64)
    mse = np.mean((a - b) ** 2)
    return 10 * math.log10(255.0 ** 2 / max(mse, 1e-10))


def held_out() -> dict[str, list[Image.Image]]:
    return {"photos": photos(HELD_OUT_PHOTOS), "scenes": scenes(16, seed=777_001)}


def evaluate(scale: int, net=None) -> dict:
    """Mean PSNR (dB, RGB, border of `scale` px ignored) on held-out images,
    photos and renderer scenes apart."""
    net = net or load_studio(scale)
    return {group: _evaluate(images, scale, net) for group, images in held_out().items() if images}


def _evaluate(images: list[Image.Image], scale: int, net) -> dict:
    results: dict[str, list[float]] = {"Lanczos": [], "Bicubic": [], "Studio": []}
    for hr in images:
        lr = shrink(hr, scale)
        truth = np.asarray(hr.crop((0, 0, lr.width * scale, lr.height * scale)))
        size = (lr.width * scale, lr.height * scale)
        results["Lanczos"].append(psnr(np.asarray(lr.resize(size, Image.LANCZOS)), truth, scale))
        results["Bicubic"].append(psnr(np.asarray(lr.resize(size, Image.BICUBIC)), truth, scale))
        results["Studio"].append(psnr(np.asarray(run_tiled(net, lr, scale)), truth, scale))
    return {k: round(float(np.mean(v)), 2) for k, v in results.items()} | {"images": len(results["Studio"])}


def _pairs(scale: int) -> list[tuple[np.ndarray, np.ndarray]]:
    pictures = photos(TRAIN_PHOTOS) + scenes(96, seed=4242)
    pairs = []
    for hr in pictures:
        lr = shrink(hr, scale)
        hr = hr.crop((0, 0, lr.width * scale, lr.height * scale))
        pairs.append((np.asarray(lr, np.float32) / 255.0, np.asarray(hr, np.float32) / 255.0))
    return pairs


def train(scale: int, steps: int = 1500, batch: int = 16, patch: int = 24, seed: int = 0,
          out: Optional[Path] = None, log_every: int = 100) -> dict:
    import torch
    import torch.nn.functional as F
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    pairs = _pairs(scale)
    # Photos hold most of the texture: draw them as often as all scenes together.
    n_photos = len(photos(TRAIN_PHOTOS))
    weights = np.array([1.0 / n_photos] * n_photos + [1.0 / max(1, len(pairs) - n_photos)] * (len(pairs) - n_photos))
    weights /= weights.sum()
    net = studio_net(scale)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=5e-5)
    started, ema = time.time(), None
    for step in range(steps):
        xs, ys = [], []
        for i in rng.choice(len(pairs), batch, p=weights):
            lr, hr = pairs[i]
            y = rng.integers(0, lr.shape[0] - patch + 1)
            x = rng.integers(0, lr.shape[1] - patch + 1)
            a = lr[y:y + patch, x:x + patch]
            b = hr[y * scale:(y + patch) * scale, x * scale:(x + patch) * scale]
            if rng.random() < 0.5:
                a, b = a[:, ::-1], b[:, ::-1]
            if rng.random() < 0.5:
                a, b = a[::-1], b[::-1]
            xs.append(np.ascontiguousarray(a))
            ys.append(np.ascontiguousarray(b))
        x = torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2)
        y = torch.from_numpy(np.stack(ys)).permute(0, 3, 1, 2)
        loss = F.l1_loss(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        if log_every and (step + 1) % log_every == 0:
            print(f"x{scale} step {step + 1}/{steps} loss {ema:.4f} {time.time() - started:.0f}s", flush=True)
    net.eval()
    out = out or studio_weights(scale)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out))
    load_studio.cache_clear()
    return {"seconds": round(time.time() - started, 1)} | evaluate(scale, net)


def main(argv: Optional[list[str]] = None) -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, choices=(2, 4), default=2)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--eval-only", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(evaluate(args.scale) if args.eval_only else train(args.scale, args.steps))


if __name__ == "__main__":
    main()
