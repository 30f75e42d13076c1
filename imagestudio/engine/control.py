"""Structure control (ControlNet): preprocessors that need no download, the
user's ControlNet models from `<models>/ControlNet`, and a measure of how well
an image follows a control's edges.

Preprocessors return what ControlNet checkpoints were trained on: white lines
on black. `canny` runs OpenCV's Canny edge detector on a photo; `scribble`
reads a drawing (lines that differ from the paper's colour), thickened, and
falls back to thickened edges when given a photo instead of a drawing;
`grayscale` keeps only brightness (recolor/brightness ControlNets). No depth
or pose preprocessor: those need downloaded models."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from ..errors import ModelLoadError, ModelNotFound, RequestError

CONTROLNET_DIRS = ("ControlNet", "controlnet")
#: ControlNets that ship with the studio, for the embedded model only
#: (folders named embedded-<type>, trained by engine/control_train.py).
SHIPPED_DIR = Path(__file__).resolve().parent / "weights" / "controlnet"
CANNY_LOW, CANNY_HIGH = 100, 200
#: A "drawing" whose lines cover more than this share of the image is a photo.
DRAWING_MAX_INK = 0.3


def _grey(image: Image.Image) -> np.ndarray:
    import cv2

    return cv2.cvtColor(np.asarray(image.convert("RGB")), cv2.COLOR_RGB2GRAY)


def canny(image: Image.Image, low: int = CANNY_LOW, high: int = CANNY_HIGH) -> Image.Image:
    import cv2

    edges = cv2.Canny(_grey(image), low, high)
    return Image.fromarray(edges).convert("RGB")


def scribble(image: Image.Image, thickness: int = 3) -> Image.Image:
    import cv2

    grey = _grey(image).astype(np.int16)
    paper = int(np.median(grey))
    ink = np.abs(grey - paper) > 64
    if ink.mean() > DRAWING_MAX_INK:  # a photo: use its edges instead
        ink = cv2.Canny(grey.astype(np.uint8), CANNY_LOW, CANNY_HIGH) > 0
    kernel = np.ones((thickness, thickness), np.uint8)
    lines = cv2.dilate(ink.astype(np.uint8) * 255, kernel)
    return Image.fromarray(lines).convert("RGB")


def grayscale(image: Image.Image) -> Image.Image:
    """Brightness only: what recolor/brightness ControlNets are trained on."""
    return image.convert("L").convert("RGB")


PREPROCESSORS = {"canny": canny, "scribble": scribble, "grayscale": grayscale}


def preprocess(kind: str, image: Image.Image, size: tuple[int, int], run: bool = True) -> Image.Image:
    """The control image at the generation size (preprocessed unless `run` is False)."""
    image = image.convert("RGB").resize(size, Image.LANCZOS)
    return PREPROCESSORS[kind](image) if run else image


def edge_overlap(image: Image.Image, control_edges: Image.Image, tolerance: int = 2) -> dict[str, float]:
    """How well `image` follows a control's edges, within `tolerance` pixels:
    recall (share of control edges drawn), precision (share of the image's
    edges that lie on a control edge; noise has edges everywhere and scores
    low here) and their harmonic mean f1."""
    import cv2

    wanted = np.asarray(control_edges.convert("L").resize(image.size, Image.NEAREST)) > 127
    found = cv2.Canny(_grey(image), CANNY_LOW // 2, CANNY_HIGH // 2) > 0
    kernel = np.ones((2 * tolerance + 1,) * 2, np.uint8)
    near_found = cv2.dilate(found.astype(np.uint8), kernel) > 0
    near_wanted = cv2.dilate(wanted.astype(np.uint8), kernel) > 0
    recall = float(near_found[wanted].mean()) if wanted.any() else 1.0
    precision = float(near_wanted[found].mean()) if found.any() else (1.0 if not wanted.any() else 0.0)
    f1 = 2 * recall * precision / (recall + precision) if recall + precision else 0.0
    return {"recall": round(recall, 4), "precision": round(precision, 4), "f1": round(f1, 4)}


def find_controlnets(models_dir: Optional[Path], architecture: Optional[str] = None) -> dict[str, Path]:
    """User ControlNets by name; with architecture "embedded", the shipped
    ones for the embedded model come first."""
    found: dict[str, Path] = {}
    if architecture == "embedded" and SHIPPED_DIR.is_dir():
        for entry in sorted(SHIPPED_DIR.iterdir()):
            if (entry / "config.json").exists():
                found[entry.name] = entry
    if not models_dir:
        return found
    for sub in CONTROLNET_DIRS:
        folder = Path(models_dir) / sub
        if not folder.is_dir():
            continue
        for entry in sorted(folder.iterdir()):
            if entry.is_dir() and (entry / "config.json").exists():
                found.setdefault(entry.name, entry)
            elif entry.is_file() and entry.suffix == ".safetensors":
                found.setdefault(entry.stem, entry)
    return found


def choose_controlnet(models_dir: Optional[Path], kind: str, name: Optional[str] = None,
                      architecture: Optional[str] = None) -> tuple[str, Path]:
    """The named ControlNet, else the one whose name mentions the control type
    (e.g. control_v11p_sd15_canny), else the only one installed."""
    nets = find_controlnets(models_dir, architecture)
    if name:
        if name not in nets:
            raise ModelNotFound(f"unknown ControlNet {name!r}; installed: {', '.join(nets) or 'none'}")
        return name, nets[name]
    matching = [n for n in nets if kind in n.lower()]
    if matching:
        return matching[0], nets[matching[0]]
    if len(nets) == 1:
        return next(iter(nets.items()))
    where = Path(models_dir) / "ControlNet" if models_dir else "(no models folder)"
    raise ModelNotFound(f"no ControlNet for {kind!r} in {where}; installed: {', '.join(nets) or 'none'}. "
                        f"Put a diffusers ControlNet folder there (its name containing '{kind}') or name one")


def check_fits(net, unet, name: str) -> None:
    """Refuse a ControlNet made for another UNet (an SD 1.5 one on SDXL, the embedded
    model's on a smaller retrained one) before a step runs: its residuals are added
    to the UNet's at every level, so otherwise the first step fails on a tensor shape."""
    for key in ("block_out_channels", "cross_attention_dim"):
        made_for, has = (_listed(model.config.get(key)) for model in (net, unet))
        if made_for != has:
            raise RequestError(f"ControlNet {name!r} does not fit this model: it was made for a UNet with "
                               f"{key} {made_for}, the model's UNet has {has}. Choose a ControlNet made "
                               f"for this model (or train one: python -m imagestudio.engine.control_train)")


def _listed(value):
    """A config value as compared and shown: a list (JSON) or a tuple (in code) as a tuple."""
    return tuple(value) if isinstance(value, (list, tuple)) else value


def load_controlnet(path: Path, dtype):
    from diffusers import ControlNetModel

    try:
        if path.is_dir():
            return ControlNetModel.from_pretrained(str(path), dtype=dtype)
        config = path.with_suffix("")  # a diffusers config folder beside the file, same name
        if not (config / "config.json").exists():
            raise ModelLoadError(
                f"{path.name}: a single-file ControlNet needs its diffusers config beside it "
                f"({config}/config.json), since no model hub is reachable; or use a diffusers folder")
        return ControlNetModel.from_single_file(str(path), config=str(config), dtype=dtype)
    except ModelLoadError:
        raise
    except Exception as err:
        raise ModelLoadError(f"could not load ControlNet {path.name}: {err}") from err
