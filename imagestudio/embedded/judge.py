"""The judge: a small CNN, trained only on renderer ground truth, that reads an image and
says which object (kind + colour) sits in each position slot, the background and the
render style. It knows nothing of the diffusion model, so it can score any model's
images for prompt adherence; the studio can reuse `analyze()` for image analysis.

Training images are blurred, noised and colour-jittered so that the judge also reads
the softer images a small diffusion model draws.
"""

from __future__ import annotations

import random
import time
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable, Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image, ImageFilter

from . import renderer

SLOTS = list(renderer.POSITIONS)
KIND_CLASSES = ["none"] + renderer.KINDS
COLOR_CLASSES = list(renderer.COLORS)
INPUT = 64
WEIGHTS = Path(__file__).parent / "judge.safetensors"


class JudgeNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()

        def block(cin, cout, stride):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
                                 nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

        self.features = nn.Sequential(
            block(3, 32, 2), block(32, 64, 1),      # 32x32
            block(64, 96, 2), block(96, 96, 1),     # 16x16
            block(96, 128, 2),                      # 8x8
        )
        self.fc = nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.Linear(128 * 8 * 8, 384), nn.ReLU(inplace=True))
        n_slots = len(SLOTS)
        self.kind = nn.Linear(384, n_slots * len(KIND_CLASSES))
        self.color = nn.Linear(384, n_slots * len(COLOR_CLASSES))
        self.background = nn.Linear(384, len(renderer.BACKGROUNDS))
        self.style = nn.Linear(384, len(renderer.STYLES))

    def forward(self, x):
        h = self.fc(self.features(x))
        b = x.shape[0]
        return (self.kind(h).view(b, len(SLOTS), -1), self.color(h).view(b, len(SLOTS), -1),
                self.background(h), self.style(h))


def _prep(images: Iterable[Image.Image]) -> torch.Tensor:
    arr = np.stack([np.asarray(im.convert("RGB").resize((INPUT, INPUT), Image.BILINEAR)) for im in images])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float().div(255.0)


def _targets(scene: renderer.Scene):
    kind = [0] * len(SLOTS)
    color = [-100] * len(SLOTS)  # ignored where the slot is empty
    for o in scene.objects:
        i = SLOTS.index(o.position)
        kind[i] = KIND_CLASSES.index(o.kind)
        color[i] = COLOR_CLASSES.index(o.color)
    return kind, color, renderer.BACKGROUNDS.index(scene.background), renderer.STYLES.index(scene.style)


def _augment(im: Image.Image, rng: random.Random) -> Image.Image:
    if rng.random() < 0.7:
        im = im.filter(ImageFilter.GaussianBlur(rng.uniform(0.2, 1.6)))
    arr = np.asarray(im).astype(np.float32)
    arr = arr * rng.uniform(0.9, 1.1) + rng.uniform(-12, 12)
    arr = arr + np.array([rng.uniform(-10, 10) for _ in range(3)])
    if rng.random() < 0.7:
        arr = arr + np.random.default_rng(rng.randrange(2**31)).normal(0, rng.uniform(1, 10), arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _batch(scenes, rng, augment=True):
    ims = [renderer.render(s) for s in scenes]
    if augment:
        ims = [_augment(im, rng) for im in ims]
    t = [_targets(s) for s in scenes]
    return (_prep(ims), torch.tensor([x[0] for x in t]), torch.tensor([x[1] for x in t]),
            torch.tensor([x[2] for x in t]), torch.tensor([x[3] for x in t]))


def train_judge(out: Path = WEIGHTS, steps: int = 2500, batch: int = 32, seed: int = 99,
                progress: Optional[Callable[[int, int, float], None]] = None,
                init: Optional[Path] = None, lr: float = 2e-3) -> JudgeNet:
    """Train the judge on freshly rendered, augmented scenes (`init`: continue from weights)."""
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    rng = random.Random(seed)
    net = JudgeNet()
    if init is not None:
        net.load_state_dict(_load_state(init))
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    ema = None
    for step in range(steps):
        scenes = [renderer.random_scene(rng) for _ in range(batch)]
        x, kind, color, bg, style = _batch(scenes, rng)
        k, c, b, s = net(x)
        loss = (F.cross_entropy(k.reshape(-1, k.shape[-1]), kind.reshape(-1))
                + F.cross_entropy(c.reshape(-1, c.shape[-1]), color.reshape(-1), ignore_index=-100)
                + 0.5 * F.cross_entropy(b, bg) + 0.5 * F.cross_entropy(s, style))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        if progress:
            progress(step + 1, steps, ema)
    net.eval()
    save_file({k: v.to(torch.float16) if v.is_floating_point() else v
               for k, v in net.state_dict().items()}, str(out))
    return net


def _load_state(path: Path) -> dict:
    from safetensors.torch import load_file

    return {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}


@lru_cache(maxsize=1)
def load_judge(path: Path = WEIGHTS) -> JudgeNet:
    net = JudgeNet()
    net.load_state_dict(_load_state(path))
    return net.eval()


@torch.no_grad()
def analyze_batch(images: list[Image.Image], net: Optional[JudgeNet] = None) -> list[dict]:
    """Labels for each image: {"objects": [{"color", "kind", "position", "confidence"}],
    "background", "style"}."""
    net = net or load_judge()
    k, c, b, s = net(_prep(images))
    kp, cp = k.softmax(-1), c.softmax(-1)
    out = []
    for i in range(len(images)):
        objs = []
        for j, slot in enumerate(SLOTS):
            ki = int(kp[i, j].argmax())
            if ki == 0:
                continue
            ci = int(cp[i, j].argmax())
            objs.append({"color": COLOR_CLASSES[ci], "kind": KIND_CLASSES[ki], "position": slot,
                         "confidence": round(float(kp[i, j, ki] * cp[i, j, ci]), 3)})
        out.append({"objects": objs, "background": renderer.BACKGROUNDS[int(b[i].argmax())],
                    "style": renderer.STYLES[int(s[i].argmax())]})
    return out


def analyze(image: Image.Image) -> dict:
    """Detected labels of one image (see `analyze_batch`)."""
    return analyze_batch([image])[0]


def satisfies(labels: dict, requested: list[dict], background: str | None = None,
              style: str | None = None) -> bool:
    """True when every requested object (colour + kind at its position) is detected,
    and the background/style too when asked for. Extra objects are not penalised."""
    found = {(o["position"], o["kind"], o["color"]) for o in labels["objects"]}
    if any((r["position"], r["kind"], r["color"]) not in found for r in requested):
        return False
    if background and labels["background"] != background:
        return False
    if style and labels["style"] != style:
        return False
    return True


def exact_objects(labels: dict, truth: dict) -> bool:
    got = sorted((o["position"], o["kind"], o["color"]) for o in labels["objects"])
    want = sorted((o["position"], o["kind"], o["color"]) for o in truth["objects"])
    return got == want


def judge_accuracy(n: int = 400, seed: int = 2024, net: Optional[JudgeNet] = None) -> dict:
    """The judge's accuracy on fresh rendered ground truth (a seed training never used):
    `objects` counts an image right only when every slot (kind, colour, or empty) is."""
    rng = random.Random(seed)
    scenes = [renderer.random_scene(rng) for _ in range(n)]
    labels = []
    for i in range(0, n, 100):
        labels += analyze_batch([renderer.render(s) for s in scenes[i:i + 100]], net)
    objects = sum(exact_objects(l, s.labels()) for l, s in zip(labels, scenes)) / n
    bg = sum(l["background"] == s.background for l, s in zip(labels, scenes)) / n
    st = sum(l["style"] == s.style for l, s in zip(labels, scenes)) / n
    return {"objects": objects, "background": bg, "style": st}
