"""Keep what must stay: a keep mask and detected faces are pasted back
unchanged after img2img, and every img2img result is measured for drift
(SSIM between input and output, overall and inside the kept regions).

Face detection uses OpenCV's Haar cascade, whose data ships inside the
`opencv-python-headless` wheel (4.x): no download."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Optional

import numpy as np
from PIL import Image

#: Grow each detected face box by this fraction of its size on every side
#: (hair, chin and ears belong to the identity too).
FACE_MARGIN = 0.25


@dataclass
class Drift:
    """SSIM (1 = unchanged) between the input and the output of an img2img."""

    overall: float
    kept: Optional[float] = None  # inside the kept regions; None when nothing is kept
    kept_fraction: float = 0.0  # share of the image that was kept
    faces: int = 0  # faces detected and kept

    def to_dict(self) -> dict:
        return {"ssim": round(self.overall, 4), "kept_ssim": None if self.kept is None else round(self.kept, 4),
                "kept_fraction": round(self.kept_fraction, 4), "faces": self.faces}

    def fields(self) -> dict:
        """Infotext keys (A1111-style `Key: value`)."""
        out = {"Drift SSIM": f"{self.overall:.4f}"}
        if self.kept is not None:
            out["Kept SSIM"] = f"{self.kept:.4f}"
            out["Kept area"] = f"{self.kept_fraction:.3f}"
        if self.faces:
            out["Kept faces"] = self.faces
        return out


@lru_cache(maxsize=1)
def _cascade():
    import cv2

    path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():  # opencv 5 wheels dropped the Haar data
        raise RuntimeError(f"OpenCV face data is missing ({path}); install opencv-python-headless<5")
    return cascade


def detect_faces(image: Image.Image) -> list[tuple[int, int, int, int]]:
    """Frontal faces as (left, top, right, bottom) boxes, margin included."""
    import cv2

    grey = cv2.cvtColor(np.asarray(image.convert("RGB")), cv2.COLOR_RGB2GRAY)
    side = min(grey.shape)
    found = _cascade().detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5,
                                        minSize=(max(16, side // 20), max(16, side // 20)))
    boxes = []
    for x, y, w, h in (found if len(found) else []):
        mx, my = int(w * FACE_MARGIN), int(h * FACE_MARGIN)
        boxes.append((int(max(0, x - mx)), int(max(0, y - my)), int(min(image.width, x + w + mx)),
                      int(min(image.height, y + h + my))))
    return boxes


def keep_region(size: tuple[int, int], mask: Optional[Image.Image] = None,
                faces: list[tuple[int, int, int, int]] = ()) -> Optional[np.ndarray]:
    """Boolean (H, W) array: True where pixels must stay. None when nothing is kept."""
    from .images import binary_mask

    keep = np.zeros((size[1], size[0]), bool)
    if mask is not None:
        # binary_mask reads white (or transparent) as "selected": here, keep.
        keep |= np.asarray(binary_mask(mask, size)) > 127
    for left, top, right, bottom in faces:
        keep[top:bottom, left:right] = True
    return keep if keep.any() else None


def paste_kept(original: Image.Image, generated: Image.Image, keep: Optional[np.ndarray]) -> Image.Image:
    """`generated` with every kept pixel copied from `original`, bit for bit."""
    if generated.size != original.size:
        generated = generated.resize(original.size, Image.LANCZOS)
    if keep is None:
        return generated
    out = np.asarray(generated.convert("RGB")).copy()
    out[keep] = np.asarray(original.convert("RGB"))[keep]
    return Image.fromarray(out)


def ssim_map(a: Image.Image, b: Image.Image) -> np.ndarray:
    """Per-pixel SSIM of two same-size images (grey, 7x7 Gaussian-free window)."""
    from skimage.metrics import structural_similarity

    ga = np.asarray(a.convert("L"), dtype=np.float64)
    gb = np.asarray(b.convert("L").resize(a.size, Image.LANCZOS), dtype=np.float64)
    if min(ga.shape) < 7:
        return np.full(ga.shape, 1.0 if np.array_equal(ga, gb) else 0.0)
    _, full = structural_similarity(ga, gb, data_range=255.0, full=True)
    return full


def drift(original: Image.Image, output: Image.Image, keep: Optional[np.ndarray] = None, faces: int = 0) -> Drift:
    full = ssim_map(original, output)
    kept = float(full[keep].mean()) if keep is not None else None
    fraction = float(keep.mean()) if keep is not None else 0.0
    return Drift(overall=float(full.mean()), kept=kept, kept_fraction=fraction, faces=faces)
