"""Upscaling: Lanczos, the studio's own small super-resolution network, and
user models (ESRGAN, Real-ESRGAN, SwinIR... through the optional `spandrel`).

Networks run tiled: the image is cut into `tile`-sized pieces, each read with
`overlap` pixels of context on every side, and only the tile's own centre is
written into the uint8 output. Memory is therefore bounded by one tile's
activations (plus the output image itself), whatever the input size; when the
overlap covers the network's receptive field the tiled result equals the
untiled one (the studio network looks 4 pixels around itself).
"""

from __future__ import annotations

import logging
import math
from functools import lru_cache
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from PIL import Image

from ..errors import ModelLoadError, ModelNotFound, RequestError
from ..request import MAX_UPSCALE_SIDE

log = logging.getLogger(__name__)

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
#: Folders (A1111 and ComfyUI layouts) where user upscaler models live.
UPSCALER_DIRS = ("ESRGAN", "RealESRGAN", "SwinIR", "upscale_models")
UPSCALER_SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt", ".bin")
BUILTIN = ("Lanczos", "Nearest", "Studio")
TILE, OVERLAP = 128, 8


# --- the studio's own network ---------------------------------------------------


def studio_net(scale: int):
    """ESPCN-style sub-pixel CNN that predicts a residual over bicubic."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class StudioSR(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = scale
            self.body = nn.Sequential(
                nn.Conv2d(3, 64, 5, padding=2), nn.PReLU(64),
                nn.Conv2d(64, 64, 3, padding=1), nn.PReLU(64),
                nn.Conv2d(64, 64, 3, padding=1), nn.PReLU(64),
                nn.Conv2d(64, 32, 3, padding=1), nn.PReLU(32),
                nn.Conv2d(32, 3 * scale * scale, 3, padding=1),
            )
            self.shuffle = nn.PixelShuffle(scale)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            base = F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)
            return base + self.shuffle(self.body(x))

    return StudioSR()


#: Pixels of input a studio output pixel depends on, each side (one 5x5 and
#: four 3x3 convolutions; bicubic's 2-pixel support is inside it).
STUDIO_RECEPTIVE_RADIUS = 6


def studio_weights(scale: int) -> Path:
    return WEIGHTS_DIR / f"studio-sr-x{scale}.safetensors"


@lru_cache(maxsize=4)
def load_studio(scale: int):
    from safetensors.torch import load_file

    path = studio_weights(scale)
    if not path.exists():
        raise ModelNotFound(f"the studio upscaler x{scale} is not installed ({path} is missing)")
    net = studio_net(scale)
    net.load_state_dict({k: v.float() for k, v in load_file(str(path)).items()})
    return net.eval()


# --- tiling -------------------------------------------------------------------


TileCallback = Callable[[int, int], None]


def run_tiled(fn: Callable, image: Image.Image, scale: int, tile: int = TILE, overlap: int = OVERLAP,
              on_tile: Optional[TileCallback] = None) -> Image.Image:
    """Apply `fn` (a (1,3,h,w) float tensor in 0..1 -> (1,3,h*scale,w*scale))
    tile by tile; each call sees at most (tile + 2*overlap)^2 input pixels.
    `on_tile(done, total)` runs after each tile (progress; may raise to cancel)."""
    import torch

    src = np.array(image.convert("RGB"))
    height, width = src.shape[:2]
    out = np.empty((height * scale, width * scale, 3), np.uint8)
    total, done = math.ceil(height / tile) * math.ceil(width / tile), 0
    with torch.inference_mode():
        for y0 in range(0, height, tile):
            for x0 in range(0, width, tile):
                y1, x1 = min(y0 + tile, height), min(x0 + tile, width)
                cy0, cx0 = max(0, y0 - overlap), max(0, x0 - overlap)
                cy1, cx1 = min(height, y1 + overlap), min(width, x1 + overlap)
                piece = torch.from_numpy(np.ascontiguousarray(src[cy0:cy1, cx0:cx1])).permute(2, 0, 1)
                result = fn(piece[None].float().div_(255.0))[0]
                oy, ox = (y0 - cy0) * scale, (x0 - cx0) * scale
                centre = result[:, oy:oy + (y1 - y0) * scale, ox:ox + (x1 - x0) * scale]
                out[y0 * scale:y1 * scale, x0 * scale:x1 * scale] = (
                    centre.clamp_(0, 1).mul_(255).round_().to(torch.uint8).permute(1, 2, 0).numpy())
                done += 1
                if on_tile is not None:
                    on_tile(done, total)
    return Image.fromarray(out)


# --- user models (optional spandrel) ---------------------------------------------


def find_user_upscalers(models_dir: Optional[Path]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    if not models_dir:
        return found
    for sub in UPSCALER_DIRS:
        folder = Path(models_dir) / sub
        if folder.is_dir():
            for entry in sorted(folder.iterdir()):
                if entry.is_file() and entry.suffix in UPSCALER_SUFFIXES and not entry.name.startswith("."):
                    found.setdefault(entry.stem, entry)
    return found


def list_upscalers(models_dir: Optional[Path] = None) -> list[str]:
    return [*BUILTIN, *find_user_upscalers(models_dir)]


@lru_cache(maxsize=2)
def load_user_upscaler(path: Path):
    """A spandrel model descriptor from safetensors, or from a pickle read by
    torch's restricted (weights-only) unpickler; never a plain pickle."""
    try:
        import spandrel
    except ImportError:
        raise ModelLoadError(
            f"{path.name}: model upscalers need the optional 'spandrel' package "
            "(pip install 'imagestudio[upscalers]'; it needs torchvision matching your torch)"
        ) from None
    from .pipelines import restricted_state_dict

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = restricted_state_dict(path)
    try:
        descriptor = spandrel.ModelLoader().load_from_state_dict(state)
    except Exception as err:  # spandrel raises for unknown architectures
        raise ModelLoadError(f"{path.name} is not an upscaler spandrel knows ({err})") from err
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise ModelLoadError(f"{path.name} is not an image-to-image model")
    return descriptor.eval()


# --- the one entry point ----------------------------------------------------------


def target_size(size: tuple[int, int], factor: float) -> tuple[int, int]:
    width, height = (max(1, int(round(side * factor))) for side in size)
    if max(width, height) > MAX_UPSCALE_SIDE:
        raise RequestError(f"the upscaled image would be {width}x{height}; the limit is {MAX_UPSCALE_SIDE} pixels per side")
    return width, height


def resolve_upscaler(name: str, models_dir: Optional[Path] = None) -> str:
    for builtin in BUILTIN:
        if name.lower() == builtin.lower():
            return builtin
    user = find_user_upscalers(models_dir)
    if name in user or Path(name).stem in user:
        return Path(name).stem if Path(name).stem in user else name
    raise RequestError(f"unknown upscaler {name!r}; choose one of {', '.join(list_upscalers(models_dir))}")


def upscale(image: Image.Image, factor: float, name: str = "Lanczos", models_dir: Optional[Path] = None,
            size: Optional[tuple[int, int]] = None, tile: int = TILE, overlap: int = OVERLAP,
            on_tile: Optional[TileCallback] = None) -> Image.Image:
    """`image` made `factor` times larger (or exactly `size`) with the named upscaler."""
    image = image.convert("RGB")
    size = size or target_size(image.size, factor)
    name = resolve_upscaler(name, models_dir)
    if name == "Lanczos" or size == image.size:
        return image.resize(size, Image.LANCZOS)
    if name == "Nearest":
        return image.resize(size, Image.NEAREST)
    if name == "Studio":
        needed = max(size[0] / image.width, size[1] / image.height)
        scale = 2 if needed <= 2 else 4
        net = load_studio(scale)
        big = run_tiled(net, image, scale, tile, overlap, on_tile)
        if needed > 4:
            big = run_tiled(net, big, scale, tile, overlap, on_tile)
    else:
        model = load_user_upscaler(find_user_upscalers(models_dir)[name])
        # Big architectures see farther: more context per tile.
        big = run_tiled(model, image, int(model.scale), max(tile, 192), max(overlap, 32), on_tile)
        while big.width < size[0] and big.width * model.scale <= 2 * MAX_UPSCALE_SIDE:
            big = run_tiled(model, big, int(model.scale), max(tile, 192), max(overlap, 32), on_tile)
    return big if big.size == size else big.resize(size, Image.LANCZOS)
