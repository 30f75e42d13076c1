"""GenerationRequest: the one description of a generation, for every mode and
every way in (CLI, native API, AUTOMATIC1111 and OpenAI adapters).

Everything that can be checked without loading a model is checked here, so a
bad value fails fast with a readable message. Checks that depend on a model
(its size bounds) live in the engine, which knows the model.
"""

from __future__ import annotations

import base64
import io
import math
import os
import random
from enum import Enum
from typing import Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .errors import ImageError

MAX_PROMPT_CHARS = 2000
MAX_COUNT = 4
#: Absolute bounds; a model narrows them (see engine.catalog.ModelInfo).
MIN_SIDE, MAX_SIDE = 64, 2048
MAX_OUTPAINT = 1024
#: Decoding guard: refuse images over this many pixels (decompression bombs).
MAX_IMAGE_PIXELS = 4096 * 4096
#: Refuse encoded uploads larger than this.
MAX_IMAGE_BYTES = 20 * 1024 * 1024

ASPECT_RATIOS: dict[str, tuple[int, int]] = {
    "1:1": (1, 1),
    "16:9": (16, 9),
    "9:16": (9, 16),
    "4:3": (4, 3),
    "3:4": (3, 4),
    "3:2": (3, 2),
    "2:3": (2, 3),
}


class Mode(str, Enum):
    txt2img = "txt2img"
    img2img = "img2img"
    inpaint = "inpaint"
    outpaint = "outpaint"
    variation = "variation"
    upscale = "upscale"


class Outpaint(BaseModel):
    """How many pixels to add on each side of the init image."""

    model_config = ConfigDict(extra="forbid")
    left: int = Field(0, ge=0, le=MAX_OUTPAINT)
    right: int = Field(0, ge=0, le=MAX_OUTPAINT)
    top: int = Field(0, ge=0, le=MAX_OUTPAINT)
    bottom: int = Field(0, ge=0, le=MAX_OUTPAINT)

    @property
    def any(self) -> bool:
        return any((self.left, self.right, self.top, self.bottom))

    @classmethod
    def parse(cls, text: str) -> "Outpaint":
        """`left=128,right=64` (CLI form) or a single number for all sides."""
        text = text.strip()
        if text.isdigit():
            n = int(text)
            return cls(left=n, right=n, top=n, bottom=n)
        values: dict[str, int] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, sep, value = part.partition("=")
            if not sep or key.strip() not in cls.model_fields or not value.strip().isdigit():
                raise ValueError(
                    f"outpaint expects side=pixels pairs such as 'left=128,right=64', got {part!r}"
                )
            values[key.strip()] = int(value)
        return cls(**values)


CONTROL_TYPES = ("canny", "scribble", "grayscale")
#: Largest side an upscale (or hires fix) may produce.
MAX_UPSCALE_SIDE = 4096


#: Named areas as (x0, y0, x1, y1) fractions of the picture. The five places leave the
#: corners out and barely overlap (measured on the embedded model's two-object prompts:
#: wider, overlapping areas drew fewer of both objects).
REGION_AREAS: dict[str, tuple[float, float, float, float]] = {
    "left": (0.0, 0.2, 0.4, 0.8),
    "right": (0.6, 0.2, 1.0, 0.8),
    "top": (0.2, 0.0, 0.8, 0.4),
    "bottom": (0.2, 0.6, 0.8, 1.0),
    "center": (0.31, 0.31, 0.69, 0.69),
    "top-left": (0.0, 0.0, 0.5, 0.5),
    "top-right": (0.5, 0.0, 1.0, 0.5),
    "bottom-left": (0.0, 0.5, 0.5, 1.0),
    "bottom-right": (0.5, 0.5, 1.0, 1.0),
    "left-half": (0.0, 0.0, 0.5, 1.0),
    "right-half": (0.5, 0.0, 1.0, 1.0),
    "top-half": (0.0, 0.0, 1.0, 0.5),
    "bottom-half": (0.0, 0.5, 1.0, 1.0),
}

MAX_REGIONS = 4
# Denoising strength when a request gives none. Inpainting usually asks for something new
# under the mask (another colour, another object), which needs more noise than img2img's
# light touch: recolouring one object of 96 rendered scenes, the embedded model got 86
# right at 0.9 and at 1.0, 84 at 0.85, 74 at 0.75 (and 19 of the first 32 at 0.6).
DEFAULT_STRENGTH = 0.6
DEFAULT_INPAINT_STRENGTH = 0.9


class Region(BaseModel):
    """A part of the picture with a prompt of its own (see prompts.regions)."""

    model_config = ConfigDict(extra="forbid")
    prompt: str = Field(..., min_length=1, max_length=MAX_PROMPT_CHARS, description="What to draw in this area.")
    area: Union[str, list[float]] = Field(..., description="A named area (" + ", ".join(REGION_AREAS)
                                          + ") or a box [x0, y0, x1, y1] in fractions of the picture.")

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("a region needs a prompt")
        return value.strip()

    @field_validator("area")
    @classmethod
    def _area(cls, value):
        if isinstance(value, str):
            key = value.strip().lower().replace(" ", "-")
            if key not in REGION_AREAS:
                raise ValueError(f"unknown area {value!r}; use one of {', '.join(REGION_AREAS)} "
                                 "or a box of four fractions x0, y0, x1, y1")
            return key
        if len(value) != 4 or not all(0 <= v <= 1 for v in value) or value[0] >= value[2] or value[1] >= value[3]:
            raise ValueError("a region box is four fractions x0, y0, x1, y1 with 0 <= x0 < x1 <= 1 and "
                             f"0 <= y0 < y1 <= 1, got {value}")
        return [float(v) for v in value]

    @property
    def box(self) -> tuple[float, float, float, float]:
        return REGION_AREAS[self.area] if isinstance(self.area, str) else tuple(self.area)

    def where(self) -> str:
        return self.area if isinstance(self.area, str) else "[" + ", ".join(f"{v:g}" for v in self.area) + "]"


class Control(BaseModel):
    """ControlNet guidance: a preprocessed control image steers the structure."""

    model_config = ConfigDict(extra="forbid")
    type: str = Field("canny", description="Preprocessor: canny (edges of a photo), scribble (a drawing) or "
                                            "grayscale (brightness, for recolor/brightness ControlNets).")
    image: str = Field(..., description="Control source image (path, data URI or base64).")
    model: Optional[str] = Field(None, description="ControlNet name in models/ControlNet; None = first matching the type.")
    weight: float = Field(1.0, ge=0, le=2, description="Conditioning scale.")
    start: float = Field(0.0, ge=0, le=1, description="Fraction of the steps where guidance starts.")
    end: float = Field(1.0, ge=0, le=1, description="Fraction of the steps where guidance ends.")
    preprocess: bool = Field(True, description="False: the image already is an edge map / scribble.")

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        value = value.lower()
        if value not in CONTROL_TYPES:
            raise ValueError(f"unknown control type {value!r}; choose one of {', '.join(CONTROL_TYPES)}")
        return value

    @model_validator(mode="after")
    def _range(self) -> "Control":
        if self.start >= self.end:
            raise ValueError("control start must be before its end")
        return self


class GenerationRequest(BaseModel):
    """One generation. Image fields hold a reference: a file path, a
    `data:image/...;base64,` URI or plain base64 (see `load_image`)."""

    model_config = ConfigDict(extra="forbid", use_enum_values=False)

    version: int = Field(1, description="Schema version of this request.")
    mode: Mode = Field(Mode.txt2img, description="txt2img, img2img, inpaint, outpaint or variation.")
    prompt: str = Field("", max_length=MAX_PROMPT_CHARS, description="What to draw; (word:1.5) weights words.")
    negative_prompt: str = Field("", max_length=MAX_PROMPT_CHARS, description="What to avoid.")
    style: Optional[str] = Field(None, description="Style preset name, 'Auto', or None for no style.")
    enhance: bool = Field(False, description="Add detail and quality terms to the prompt.")
    model: Optional[str] = Field(None, description="Catalog name; None means the default model.")
    aspect_ratio: Optional[str] = Field(None, description="One of " + ", ".join(ASPECT_RATIOS))
    width: Optional[int] = Field(None, ge=MIN_SIDE, le=MAX_SIDE, multiple_of=8)
    height: Optional[int] = Field(None, ge=MIN_SIDE, le=MAX_SIDE, multiple_of=8)
    count: int = Field(1, ge=1, le=MAX_COUNT, description="Images in this request (1-4).")
    steps: Optional[int] = Field(None, ge=1, le=150, description="Sampling steps; None = model default.")
    guidance: Optional[float] = Field(None, ge=0, le=30, description="CFG scale; None = model default.")
    sampler: Optional[str] = Field(None, description="Sampler name, e.g. 'Euler a', 'DPM++ 2M Karras'.")
    seed: int = Field(-1, ge=-1, le=2**32 - 1, description="-1 = random; image i uses seed+i.")
    variation_seed: Optional[int] = Field(None, ge=-1, le=2**32 - 1)
    variation_strength: float = Field(0.0, ge=0, le=1)
    strength: Optional[float] = Field(None, ge=0, le=1, description="Denoising strength for img2img/inpaint; "
                                      f"None = {DEFAULT_STRENGTH} for img2img, {DEFAULT_INPAINT_STRENGTH} for inpaint.")
    init_image: Optional[str] = Field(None, description="Reference image (path, data URI or base64).")
    mask: Optional[str] = Field(None, description="Inpaint mask: white = repaint, black = keep.")
    outpaint: Outpaint = Field(default_factory=Outpaint)
    mask_blur: int = Field(4, ge=0, le=64, description="Feather (pixels) inside the mask edge.")
    # --- beyond generate (engine/upscale, control, keep) ---
    upscaler: str = Field("Lanczos", description="Upscaler for upscale mode and hires fix: Lanczos, Studio, or a model file.")
    upscale_factor: float = Field(2.0, ge=1, le=8, description="Upscale mode: how many times larger.")
    hires_scale: Optional[float] = Field(None, ge=1, le=4, description="Hires fix: txt2img, upscale by this, then img2img.")
    hires_strength: float = Field(0.45, ge=0, le=1, description="Hires fix: denoising strength of the second pass.")
    hires_steps: Optional[int] = Field(None, ge=1, le=150, description="Hires fix: steps of the second pass; None = steps.")
    control: Optional[Control] = Field(None, description="ControlNet guidance (txt2img, img2img).")
    keep_mask: Optional[str] = Field(None, description="img2img: white = keep these pixels unchanged.")
    keep_faces: bool = Field(False, description="img2img: keep detected faces unchanged.")
    color_correction: bool = Field(False, description="img2img: match the result's colours to the init "
                                   "image's (A1111's img2img color correction).")
    regions: list[Region] = Field(default_factory=list, max_length=MAX_REGIONS,
                                  description="Areas with a prompt of their own (the prompt still sets the whole picture).")
    auto_regions: Optional[bool] = Field(None, description="Read regions from the prompt's place words "
                                         "('... on the left and ... on the right'); None = the model's default.")

    @field_validator("prompt", "negative_prompt")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()

    @field_validator("aspect_ratio")
    @classmethod
    def _known_ratio(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and value not in ASPECT_RATIOS:
            raise ValueError(f"unknown aspect ratio {value!r}; choose one of {', '.join(ASPECT_RATIOS)}")
        return value

    @model_validator(mode="after")
    def _mode_inputs(self) -> "GenerationRequest":
        needs_image = self.mode in (Mode.img2img, Mode.inpaint, Mode.outpaint, Mode.variation, Mode.upscale)
        if self.mode in (Mode.txt2img, Mode.img2img, Mode.inpaint, Mode.outpaint) and not self.prompt:
            # variation may reuse the prompt of the image it varies
            if not (self.mode is Mode.outpaint):
                raise ValueError("prompt is empty: describe what to draw")
        if needs_image and self.mode is not Mode.variation and not self.init_image:
            raise ValueError(f"mode {self.mode.value} needs an init image")
        if (self.keep_mask or self.keep_faces) and self.mode not in (Mode.img2img, Mode.variation):
            raise ValueError("keep mask / keep faces apply to img2img (inpaint already keeps the unmasked area)")
        if self.color_correction and (self.mode not in (Mode.img2img, Mode.variation) or not self.init_image):
            # inpaint keeps the unmasked pixels as they were, and matching the whole
            # picture's colours to the original would pull a repainted object's new
            # colour back towards the old one
            raise ValueError("color correction applies to img2img (and variations of an image): "
                             "it matches the result's colours to the init image's")
        if self.control is not None and self.mode not in (Mode.txt2img, Mode.img2img):
            raise ValueError("control guidance applies to txt2img and img2img")
        if self.mode is Mode.inpaint and not self.mask:
            raise ValueError("inpaint needs a mask (white where the image should be repainted)")
        if self.mode is Mode.outpaint and not self.outpaint.any:
            raise ValueError("outpaint needs at least one side to extend, e.g. left=128")
        if self.regions and self.auto_regions:
            raise ValueError("give regions or auto_regions, not both")
        if self.regions and self.mode is Mode.upscale:
            raise ValueError("regions apply to generation modes, not upscale")
        if self.strength is None:
            self.strength = DEFAULT_INPAINT_STRENGTH if self.mode is Mode.inpaint else DEFAULT_STRENGTH
        if (self.width is None) != (self.height is None):
            raise ValueError("give both width and height, or neither")
        if self.width is not None and self.aspect_ratio is not None:
            raise ValueError("give either an aspect ratio or an exact width/height, not both")
        return self

    # --- derived values -------------------------------------------------

    def with_seed(self) -> "GenerationRequest":
        """A copy whose random seeds are drawn, so the result can be reproduced."""
        update = {}
        if self.seed == -1:
            update["seed"] = random.SystemRandom().randrange(2**32 - MAX_COUNT)
        if self.variation_seed == -1:
            update["variation_seed"] = random.SystemRandom().randrange(2**32 - MAX_COUNT)
        return self.model_copy(update=update) if update else self

    def seeds(self) -> list[int]:
        """Per-image seeds: seed, seed+1, ... as AUTOMATIC1111 does."""
        if self.seed == -1:
            raise ValueError("call with_seed() first")
        return [(self.seed + i) % 2**32 for i in range(self.count)]


def size_for_aspect(ratio: str, native: int, multiple: int = 8) -> tuple[int, int]:
    """A size with about `native`² pixels and the given aspect ratio."""
    rw, rh = ASPECT_RATIOS[ratio]
    area = native * native
    width = math.sqrt(area * rw / rh)
    height = area / width
    return _round(width, multiple), _round(height, multiple)


def _round(value: float, multiple: int) -> int:
    return max(multiple, int(round(value / multiple)) * multiple)


# --- images -------------------------------------------------------------


def load_image(ref: str, *, what: str = "image"):
    """Decode an image reference safely: a path, a data URI or base64.

    Raises ImageError with a sentence naming the problem (not an image,
    truncated, too many pixels, too many bytes)."""
    from PIL import Image

    data = _image_bytes(ref, what)
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageError(f"{what} is {len(data) // 1024 // 1024} MB; the limit is {MAX_IMAGE_BYTES // 1024 // 1024} MB")
    try:
        with Image.open(io.BytesIO(data)) as probe:
            width, height = probe.size
            if width * height > MAX_IMAGE_PIXELS:
                raise ImageError(
                    f"{what} is {width}x{height} pixels; the limit is {MAX_IMAGE_PIXELS} pixels"
                )
        image = Image.open(io.BytesIO(data))
        image.load()
    except ImageError:
        raise
    except Image.DecompressionBombError as err:
        raise ImageError(f"{what} is too large to decode safely ({err})") from None
    except Exception as err:  # PIL raises many types for broken files
        raise ImageError(f"{what} could not be read as an image ({type(err).__name__}: {err})") from None
    return image


def _image_bytes(ref: str, what: str) -> bytes:
    if ref.startswith("data:"):
        _, _, payload = ref.partition(",")
        return _b64(payload, what)
    if len(ref) < 4096 and os.path.exists(ref):
        with open(ref, "rb") as fh:
            return fh.read()
    if len(ref) < 4096 and ("/" in ref or ref.lower().endswith((".png", ".jpg", ".jpeg", ".webp"))) and not _looks_b64(ref):
        raise ImageError(f"{what} file not found: {ref}")
    return _b64(ref, what)


def _looks_b64(text: str) -> bool:
    return len(text) > 64 and len(text) % 4 == 0


def _b64(payload: str, what: str) -> bytes:
    try:
        return base64.b64decode(payload, validate=False)
    except Exception:
        raise ImageError(f"{what} is neither a file path nor valid base64") from None


def image_to_data_uri(image, fmt: str = "PNG") -> str:
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(buf.getvalue()).decode()
