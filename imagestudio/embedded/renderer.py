"""Procedural scene renderer: the embedded model's training data and the judge's
ground truth.

A scene is 1-3 coloured objects in distinct position slots, over a background, drawn
in one render style. Every scene comes with exact labels (`Scene`) and captions that
vary their wording. Everything is seeded: `random_scene(rng)` + `render(scene)` give
the same pixels for the same seed.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SIZE = 128
_SS = 2  # supersampling factor for smooth edges

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 38, 38),
    "orange": (247, 138, 24),
    "yellow": (250, 214, 30),
    "green": (46, 170, 64),
    "blue": (36, 86, 222),
    "purple": (136, 56, 196),
    "pink": (248, 118, 184),
    "brown": (128, 78, 38),
}
KINDS = ["circle", "square", "triangle", "star", "house", "tree", "flower", "boat"]
POSITIONS: dict[str, tuple[int, int]] = {
    "left": (30, 64),
    "right": (98, 64),
    "top": (64, 30),
    "bottom": (64, 98),
    "center": (64, 64),
}
BACKGROUNDS = ["white", "black", "day", "sunset", "night", "sea", "grass", "snow"]
STYLES = ["flat", "comic", "pastel", "neon", "shaded"]

# Colours that would vanish into (part of) a background are never drawn on it.
_FORBIDDEN = {
    "white": set(),
    "black": {"brown", "purple"},
    "day": set(),
    "sunset": {"orange", "purple"},
    "night": {"brown", "purple"},
    "sea": {"blue"},
    "grass": {"green"},
    "snow": set(),
}
_NEON_BACKGROUNDS = ["black", "night"]


@dataclass
class SceneObject:
    color: str
    kind: str
    position: str
    size: int  # bounding size in pixels at 128x128
    dx: int = 0
    dy: int = 0


@dataclass
class Scene:
    objects: list[SceneObject]
    background: str
    style: str
    seed: int = 0
    extras: dict = field(default_factory=dict)

    def labels(self) -> dict:
        return {
            "objects": [
                {"color": o.color, "kind": o.kind, "position": o.position} for o in self.objects
            ],
            "background": self.background,
            "style": self.style,
        }


def allowed_colors(background: str) -> list[str]:
    return [c for c in COLORS if c not in _FORBIDDEN[background]]


def random_scene(rng: random.Random, n_objects: int | None = None, style: str | None = None,
                 background: str | None = None, color_weights: dict[str, float] | None = None) -> Scene:
    """A random scene. `color_weights` (colour -> relative weight, 1 when absent) draws
    some colours more often: brown and purple are forbidden on some backgrounds, so a
    uniform draw gives each about half the share of the others. None keeps the uniform
    draw and its exact random sequence (the captions of earlier training cycles)."""
    style = style or rng.choice(STYLES)
    if background is None:
        background = rng.choice(_NEON_BACKGROUNDS if style == "neon" else BACKGROUNDS)
    if n_objects is None:
        n_objects = rng.choices([1, 2, 3], weights=[0.5, 0.35, 0.15])[0]
    positions = rng.sample(list(POSITIONS), n_objects)
    colors = allowed_colors(background)
    objects = []
    for pos in positions:
        size = rng.randint(38, 56) if n_objects == 1 else rng.randint(30, 40)
        jitter = 6 if n_objects == 1 else 3
        dx, dy = rng.randint(-jitter, jitter), rng.randint(-jitter, jitter)
        cx, cy = POSITIONS[pos]
        # keep the whole object inside the frame
        dx = max(min(dx, SIZE - 3 - size // 2 - cx), 3 + size // 2 - cx)
        dy = max(min(dy, SIZE - 3 - size // 2 - cy), 3 + size // 2 - cy)
        if color_weights:
            color = rng.choices(colors, weights=[color_weights.get(c, 1.0) for c in colors])[0]
        else:
            color = rng.choice(colors)
        objects.append(SceneObject(color, rng.choice(KINDS), pos, size, dx, dy))
    return Scene(objects, background, style, seed=rng.randint(0, 2**31 - 1))


# ----------------------------------------------------------------------------- drawing

def _mix(a, b, t: float):
    return tuple(int(round(x * (1 - t) + y * t)) for x, y in zip(a, b))


def _vgradient(top, bottom, h0=0, h1=SIZE) -> np.ndarray:
    img = np.zeros((SIZE, SIZE, 3), np.float32)
    for y in range(SIZE):
        t = min(max((y - h0) / max(h1 - h0, 1), 0.0), 1.0)
        img[y, :] = np.array(top) * (1 - t) + np.array(bottom) * t
    return img


def _background(name: str, rng: random.Random) -> np.ndarray:
    if name == "white":
        return np.full((SIZE, SIZE, 3), (246, 245, 240), np.float32)
    if name == "black":
        return np.full((SIZE, SIZE, 3), (16, 16, 22), np.float32)
    if name == "day":
        img = _vgradient((110, 170, 235), (190, 225, 250))
        pil = Image.fromarray(img.astype(np.uint8))
        d = ImageDraw.Draw(pil)
        for _ in range(rng.randint(1, 2)):  # small clouds
            x, y = rng.randint(5, 110), rng.randint(4, 40)
            for k in range(3):
                d.ellipse([x + 7 * k, y - (3 if k == 1 else 0), x + 7 * k + 12, y + 9], fill=(250, 250, 252))
        return np.asarray(pil).astype(np.float32)
    if name == "sunset":
        img = _vgradient((70, 48, 110), (252, 176, 96), 0, 100)
        img[100:] = (60, 40, 60)  # dark land at the horizon
        return img
    if name == "night":
        img = _vgradient((8, 12, 40), (24, 32, 78))
        for _ in range(rng.randint(8, 16)):
            x, y = rng.randrange(SIZE), rng.randrange(SIZE)
            img[y, x] = (235, 235, 210)
        return img
    horizon = rng.randint(66, 80)
    if name == "sea":
        img = _vgradient((140, 195, 240), (205, 230, 250), 0, horizon)
        img[horizon:] = _vgradient((30, 90, 150), (20, 60, 120), horizon, SIZE)[horizon:]
        return img
    if name == "grass":
        img = _vgradient((130, 185, 240), (200, 228, 250), 0, horizon)
        img[horizon:] = _vgradient((92, 170, 70), (60, 130, 48), horizon, SIZE)[horizon:]
        return img
    if name == "snow":
        img = _vgradient((170, 190, 215), (215, 225, 238), 0, horizon)
        img[horizon:] = _vgradient((250, 250, 252), (228, 234, 242), horizon, SIZE)[horizon:]
        return img
    raise ValueError(name)


def _star(cx, cy, r_out, r_in, n=5, rot=-math.pi / 2):
    pts = []
    for i in range(2 * n):
        r = r_out if i % 2 == 0 else r_in
        a = rot + i * math.pi / n
        pts.append((cx + r * math.cos(a), cy + r * math.sin(a)))
    return pts


def _parts(obj: SceneObject, base_rgb) -> list[tuple[str, list, tuple]]:
    """The object as drawing primitives at supersampled scale: (op, args, rgb).
    The first part is the object's body: it carries the object's colour."""
    s = obj.size * _SS
    cx = (POSITIONS[obj.position][0] + obj.dx) * _SS
    cy = (POSITIONS[obj.position][1] + obj.dy) * _SS
    h = s / 2
    dark = _mix(base_rgb, (0, 0, 0), 0.45)
    k = obj.kind
    if k == "circle":
        return [("ellipse", [cx - h, cy - h, cx + h, cy + h], base_rgb)]
    if k == "square":
        q = h * 0.86
        return [("rect", [cx - q, cy - q, cx + q, cy + q], base_rgb)]
    if k == "triangle":
        return [("poly", [(cx, cy - h), (cx + h, cy + h * 0.8), (cx - h, cy + h * 0.8)], base_rgb)]
    if k == "star":
        return [("poly", _star(cx, cy + h * 0.08, h * 1.05, h * 0.45), base_rgb)]
    if k == "house":
        w = h * 0.8
        roof = (90, 40, 30) if obj.color not in ("red", "brown") else (70, 70, 80)
        door = _mix(base_rgb, (0, 0, 0), 0.6)
        return [
            ("rect", [cx - w, cy - h * 0.15, cx + w, cy + h], base_rgb),
            ("poly", [(cx - w * 1.2, cy - h * 0.1), (cx, cy - h), (cx + w * 1.2, cy - h * 0.1)], roof),
            ("rect", [cx - w * 0.25, cy + h * 0.35, cx + w * 0.25, cy + h], door),
        ]
    if k == "tree":
        trunk = (100, 62, 30) if obj.color != "brown" else (60, 36, 20)
        return [
            ("ellipse", [cx - h * 0.85, cy - h, cx + h * 0.85, cy + h * 0.45], base_rgb),
            ("rect", [cx - h * 0.16, cy + h * 0.3, cx + h * 0.16, cy + h], trunk),
        ]
    if k == "flower":
        parts = []
        pr = h * 0.38
        for i in range(5):
            a = -math.pi / 2 + i * 2 * math.pi / 5
            px, py = cx + h * 0.55 * math.cos(a), cy - h * 0.2 + h * 0.55 * math.sin(a)
            parts.append(("ellipse", [px - pr, py - pr, px + pr, py + pr], base_rgb))
        stem = (40, 120, 50) if obj.color != "green" else (20, 80, 30)
        mid = (250, 214, 30) if obj.color != "yellow" else (200, 100, 20)
        parts.append(("rect", [cx - h * 0.07, cy + h * 0.2, cx + h * 0.07, cy + h], stem))
        parts.append(("ellipse", [cx - pr * 0.8, cy - h * 0.2 - pr * 0.8, cx + pr * 0.8, cy - h * 0.2 + pr * 0.8], mid))
        return parts
    if k == "boat":
        sail = (245, 245, 245) if obj.color != "yellow" else (250, 250, 250)
        return [
            ("poly", [(cx - h, cy + h * 0.25), (cx + h, cy + h * 0.25), (cx + h * 0.6, cy + h * 0.8),
                      (cx - h * 0.6, cy + h * 0.8)], base_rgb),
            ("rect", [cx - h * 0.05, cy - h, cx + h * 0.05, cy + h * 0.25], (60, 50, 40)),
            ("poly", [(cx + h * 0.1, cy - h * 0.95), (cx + h * 0.1, cy + h * 0.15), (cx + h * 0.75, cy + h * 0.15)], sail),
            ("poly", [(cx - h * 0.1, cy - h * 0.7), (cx - h * 0.1, cy + h * 0.15), (cx - h * 0.6, cy + h * 0.15)], sail),
        ]
    raise ValueError(k)


def _draw(d: ImageDraw.ImageDraw, op, args, fill=None, outline=None, width=0):
    if op == "ellipse":
        d.ellipse(args, fill=fill, outline=outline, width=width)
    elif op == "rect":
        d.rectangle(args, fill=fill, outline=outline, width=width)
    else:
        d.polygon(args, fill=fill, outline=outline, width=width)


def _down(img: Image.Image) -> Image.Image:
    return img.resize((SIZE, SIZE), Image.LANCZOS)


def _mask(parts, outline=0) -> Image.Image:
    m = Image.new("L", (SIZE * _SS, SIZE * _SS), 0)
    d = ImageDraw.Draw(m)
    for op, args, _ in parts:
        _draw(d, op, args, fill=255, outline=255 if outline else None, width=outline)
    return m


def render(scene: Scene) -> Image.Image:
    """Draw a scene as a 128x128 RGB image (deterministic for a given scene)."""
    rng = random.Random(scene.seed)
    style = scene.style
    bg = _background(scene.background, rng)
    if style == "pastel":
        bg = bg * 0.55 + 255 * 0.45
    canvas = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8)).resize((SIZE * _SS,) * 2, Image.BILINEAR)

    for obj in scene.objects:
        base = COLORS[obj.color]
        if style == "pastel":
            base = _mix(base, (255, 255, 255), 0.42)
        parts = _parts(obj, base)
        if style == "shaded":
            shadow = _mask(parts).filter(ImageFilter.GaussianBlur(5 * _SS))
            shadow = Image.fromarray((np.asarray(shadow) * 0.45).astype(np.uint8))
            off = 4 * _SS
            canvas.paste((0, 0, 0), (off, off), shadow)
        if style == "neon":
            glow = Image.new("RGB", canvas.size, (0, 0, 0))
            gd = ImageDraw.Draw(glow)
            for op, args, rgb in parts:
                _draw(gd, op, args, outline=_mix(rgb, (255, 255, 255), 0.2), width=4 * _SS)
            blurred = glow.filter(ImageFilter.GaussianBlur(4 * _SS))
            arr = np.asarray(canvas).astype(np.float32)
            body = Image.new("RGB", canvas.size, (0, 0, 0))
            bd = ImageDraw.Draw(body)
            for op, args, rgb in parts:
                _draw(bd, op, args, fill=_mix(rgb, (0, 0, 0), 0.6))
            bmask = np.asarray(_mask(parts)).astype(np.float32)[..., None] / 255
            arr = arr * (1 - bmask) + np.asarray(body).astype(np.float32) * bmask
            arr = arr + np.asarray(blurred).astype(np.float32) * 1.6 + np.asarray(glow).astype(np.float32) * 0.9
            canvas = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
            continue
        d = ImageDraw.Draw(canvas)
        outline = (12, 12, 12) if style == "comic" else None
        width = 3 * _SS if style == "comic" else 0
        for op, args, rgb in parts:
            _draw(d, op, args, fill=rgb, outline=outline, width=width)
        if style == "shaded":
            # light from the top left: a radial ramp over the object's own pixels
            m = np.asarray(_mask(parts)).astype(np.float32)[..., None] / 255
            s = obj.size * _SS
            cx = (POSITIONS[obj.position][0] + obj.dx) * _SS - s * 0.25
            cy = (POSITIONS[obj.position][1] + obj.dy) * _SS - s * 0.25
            yy, xx = np.mgrid[0:SIZE * _SS, 0:SIZE * _SS]
            r = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2) / (s * 0.9)
            light = np.clip(1.35 - 0.75 * r, 0.45, 1.35)[..., None]
            arr = np.asarray(canvas).astype(np.float32)
            shaded = arr * light + np.clip(0.5 - r, 0, 1)[..., None] * 90
            arr = arr * (1 - m) + shaded * m
            canvas = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    return _down(canvas)


# ----------------------------------------------------------------------------- captions

KIND_WORDS = {
    "circle": ["circle", "disc", "round disc", "ball"],
    "square": ["square", "box", "block"],
    "triangle": ["triangle", "pyramid shape"],
    "star": ["star", "five-pointed star"],
    "house": ["house", "cottage", "little house"],
    "tree": ["tree", "round tree"],
    "flower": ["flower", "blossom"],
    "boat": ["boat", "sailboat", "sailing boat"],
}
POS_WORDS = {
    "left": ["on the left", "at the left", "to the left", "on the left side"],
    "right": ["on the right", "at the right", "to the right", "on the right side"],
    "top": ["at the top", "on top", "at the top of the picture", "up high"],
    "bottom": ["at the bottom", "below", "at the bottom of the picture", "down low"],
    "center": ["in the center", "in the middle", "at the center", "centered"],
}
POS_LEADS = {
    "left": ["left side", "left"], "right": ["right side", "right"], "top": ["top", "upper part"],
    "bottom": ["bottom", "lower part"], "center": ["center", "middle"],
}
BG_WORDS = {
    "white": ["on a white background", "white background", "on plain white"],
    "black": ["on a black background", "black background", "on plain black"],
    "day": ["blue sky", "on a clear day sky", "daytime sky with clouds"],
    "sunset": ["at sunset", "sunset sky", "in the evening at sunset"],
    "night": ["at night", "night sky with stars", "starry night"],
    "sea": ["by the sea", "over the sea", "sea and sky"],
    "grass": ["on green grass", "grassy meadow", "on a meadow"],
    "snow": ["in the snow", "snowy ground", "on snow"],
}
STYLE_WORDS = {
    "flat": [""],
    "comic": ["comic style, bold outlines"],
    "pastel": ["pastel colors"],
    "neon": ["neon glow"],
    "shaded": ["3d shaded render"],
}
SIZE_WORDS = {"small": ["small", "little", "tiny"], "big": ["big", "large"]}


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _size_word(obj: SceneObject, rng: random.Random) -> str:
    if obj.size <= 41 and rng.random() < 0.5:
        return rng.choice(SIZE_WORDS["small"])
    if obj.size >= 51 and rng.random() < 0.5:
        return rng.choice(SIZE_WORDS["big"])
    return ""


def object_phrase(obj: SceneObject, rng: random.Random, template: int | None = None,
                  sized: bool = True) -> str:
    kind = rng.choice(KIND_WORDS[obj.kind])
    size = _size_word(obj, rng) if sized else ""
    noun = " ".join(w for w in (size, obj.color, kind) if w)
    pos = rng.choice(POS_WORDS[obj.position])
    lead = rng.choice(POS_LEADS[obj.position])
    t = rng.randrange(4) if template is None else template
    if t == 0:
        return f"{_article(noun)} {noun} {pos}"
    if t == 1:
        return f"{lead}: one {noun}"
    if t == 2:
        return f"{noun} {pos}"
    return f"{pos} {_article(noun)} {noun}"


def caption(scene: Scene, rng: random.Random) -> str:
    """A training caption for a scene, with varied wording."""
    t = rng.randrange(4)
    phrases = [object_phrase(o, rng, t if rng.random() < 0.7 else None, sized=len(scene.objects) == 1)
               for o in scene.objects]
    if t == 1:
        text = "; ".join(phrases)
    elif len(phrases) == 1:
        text = phrases[0]
    else:
        text = ", ".join(phrases[:-1]) + " and " + phrases[-1]
    if rng.random() < 0.1 and len(scene.objects) == 1:
        text = "there is " + text if t in (0,) else text
    extras = []
    if rng.random() < 0.85:
        extras.append(rng.choice(BG_WORDS[scene.background]))
    style_words = rng.choice(STYLE_WORDS[scene.style])
    if style_words:
        extras.append(style_words)
    rng.shuffle(extras)
    return ", ".join([text] + extras)


# Held-out wordings for the evaluator's paraphrase set: sentence frames and position
# phrases that `caption` never produces.
PARA_POS = {
    "left": ["in the left part", "on the left-hand side", "over on the left"],
    "right": ["in the right part", "on the right-hand side", "over on the right"],
    "top": ["near the top edge", "in the upper area", "high up in the image"],
    "bottom": ["near the bottom edge", "in the lower area", "low in the image"],
    "center": ["right in the middle", "in the very center", "in the central area"],
}
PARA_FRAMES = [
    "please draw one {color} {kind} {pos}",
    "an image showing a {color} {kind} {pos}",
    "I want a single {color} {kind} {pos}",
    "{pos_cap}, a {color} {kind} is visible",
    "picture with a {color} {kind} placed {pos}",
]


def paraphrase(obj: SceneObject, rng: random.Random) -> str:
    pos = rng.choice(PARA_POS[obj.position])
    frame = rng.choice(PARA_FRAMES)
    text = frame.format(color=obj.color, kind=rng.choice(KIND_WORDS[obj.kind]), pos=pos,
                        pos_cap=pos[0].upper() + pos[1:])
    return text


def make_dataset(n: int, seed: int):
    """n (image array uint8 HxWx3, caption, scene) triples, deterministic in seed."""
    rng = random.Random(seed)
    images = np.zeros((n, SIZE, SIZE, 3), np.uint8)
    captions, scenes = [], []
    for i in range(n):
        sc = random_scene(rng)
        images[i] = np.asarray(render(sc))
        captions.append(caption(sc, rng))
        scenes.append(sc)
    return images, captions, scenes
