"""Image analysis ("interrogation"): propose a prompt, a model and a size for
an image.

1. A PNG that carries generation settings (studio, AUTOMATIC1111, ComfyUI
   `parameters` chunk) gives its exact prompt, negative prompt, model, size
   and seed; a studio PNG also gives the whole request (`imagestudio` chunk).
   AUTOMATIC1111's JPEG and WebP files carry the same text in the EXIF
   UserComment, which is read too.
2. Otherwise the embedded model's judge (a small CNN trained on the scene
   renderer) describes the image: objects with colour and position, the
   background and the style. It only knows that domain: `confidence` says
   how sure it is, and low-confidence descriptions are flagged.
3. Always: the nearest aspect ratio and a size for the proposed model.
"""

from __future__ import annotations

import math
from typing import Any, Optional

from PIL import Image

from ..errors import ModelNotFound
from ..request import ASPECT_RATIOS, size_for_aspect
from ..store.metadata import parse_parameters, read_parameters, read_request

#: Below this mean confidence the judge's description is marked as a guess.
CONFIDENT = 0.5

POSITION_WORDS = {"left": "on the left", "right": "on the right", "top": "at the top",
                  "bottom": "at the bottom", "center": "in the center"}


def nearest_aspect(width: int, height: int) -> str:
    """The aspect ratio (from the studio's list) closest in log scale."""
    target = math.log(width / height)
    return min(ASPECT_RATIOS, key=lambda r: abs(math.log(ASPECT_RATIOS[r][0] / ASPECT_RATIOS[r][1]) - target))


def analyse(image: Image.Image, catalog=None) -> dict[str, Any]:
    """{"source": "parameters"|"judge"|"none", "prompt", "negative_prompt",
    "model", "width", "height", "aspect_ratio", "suggested_size", ...}."""
    width, height = image.size
    result: dict[str, Any] = {"width": width, "height": height, "aspect_ratio": nearest_aspect(width, height),
                              "source": "none", "prompt": "", "negative_prompt": "", "model": None}
    text = read_parameters(image) or exif_parameters(image)
    if text:
        fields = parse_parameters(text)
        result.update(source="parameters", prompt=fields.pop("prompt"), negative_prompt=fields.pop("negative_prompt"),
                      model=fields.get("Model"), parameters=text, settings=fields)
        stored = read_request(image)
        if stored:
            result["request"] = stored.get("request")
    else:
        described = describe(image)
        if described:
            result.update(source="judge", **described)
            result.setdefault("model", None)
    result["model"] = result["model"] or _default_model(catalog, result["source"])
    native = _native(catalog, result["model"])
    if native:
        result["suggested_size"] = list(size_for_aspect(result["aspect_ratio"], native))
    return result


def exif_parameters(image: Image.Image) -> Optional[str]:
    """A1111's infotext in a JPEG/WebP: EXIF UserComment, an 8-byte charset
    prefix then the text (UNICODE = UTF-16, big-endian as A1111's piexif writes it)."""
    try:
        comment = image.getexif().get_ifd(0x8769).get(0x9286)
    except Exception:  # no or broken EXIF
        return None
    if isinstance(comment, str):
        return comment.strip("\x00").strip() or None
    if not isinstance(comment, bytes) or len(comment) <= 8:
        return None
    prefix, payload = comment[:8], comment[8:]
    if prefix.startswith(b"UNICODE"):
        little = len(payload) > 1 and payload[1] == 0 and payload[0] != 0
        text = payload.decode("utf-16-le" if little else "utf-16-be", errors="replace")
    else:
        text = payload.decode("utf-8", errors="replace")
    text = text.strip("\x00").strip()
    return text or None


def describe(image: Image.Image) -> Optional[dict]:
    """The judge's description as a prompt in the embedded model's wording,
    or None when the judge is not installed."""
    try:
        from ..embedded import judge
    except ImportError:
        return None
    if not judge.WEIGHTS.exists():
        return None
    labels = judge.analyze(image.convert("RGB"))
    return {"prompt": caption(labels), "labels": labels, "confidence": _confidence(labels),
            "guess": _confidence(labels) < CONFIDENT}


def caption(labels: dict) -> str:
    objects = sorted(labels.get("objects", []), key=lambda o: list(POSITION_WORDS).index(o["position"])
                     if o["position"] in POSITION_WORDS else 9)
    phrases = []
    for o in objects:
        noun = f"{o['color']} {o['kind']}"
        article = "an" if noun[0] in "aeiou" else "a"
        phrases.append(f"{article} {noun} {POSITION_WORDS.get(o['position'], o['position'])}")
    if not phrases:
        text = "an empty scene"
    elif len(phrases) == 1:
        text = phrases[0]
    else:
        text = ", ".join(phrases[:-1]) + " and " + phrases[-1]
    extras = []
    if labels.get("background"):
        extras.append(f"{labels['background']} background")
    if labels.get("style"):
        extras.append(f"{labels['style']} style")
    return ", ".join([text, *extras])


def _confidence(labels: dict) -> float:
    scores = [o.get("confidence", 0.0) for o in labels.get("objects", [])]
    return round(sum(scores) / len(scores), 3) if scores else 0.0


def _default_model(catalog, source: str) -> Optional[str]:
    if catalog is None:
        return None
    try:
        return catalog.default().name
    except ModelNotFound:
        return None


def _native(catalog, model: Optional[str]) -> Optional[int]:
    if catalog is None:
        return None
    try:
        return catalog.get(model).native_size
    except ModelNotFound:
        try:
            return catalog.default().native_size
        except ModelNotFound:
            return None
