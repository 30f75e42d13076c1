"""Image bytes in and out of the compatibility APIs.

Foreign clients send images as base64 (A1111, sometimes as a data URI) or as
multipart files (OpenAI), and each has its own mask convention. Everything
here turns them into PNG bytes the job service stores as request inputs, with
masks normalised to ours: an "L" image, white = repaint, black = keep."""

from __future__ import annotations

import base64
import binascii
import io

from PIL import Image

from ...errors import ImageError
from ...request import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS


class ImageTooLarge(ImageError):
    """The encoded upload is over MAX_IMAGE_BYTES."""

    http_status = 413


def b64_to_bytes(text: str, *, what: str = "image") -> bytes:
    """Plain base64 or a `data:image/...;base64,` URI -> bytes."""
    text = (text or "").strip()
    if text.startswith("data:"):
        text = text.partition(",")[2]
    if not text:
        raise ImageError(f"{what} is empty")
    if len(text) * 3 // 4 > MAX_IMAGE_BYTES:
        raise ImageTooLarge(f"{what} is over {MAX_IMAGE_BYTES // 1024 // 1024} MB")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=False)
    except (binascii.Error, ValueError):
        raise ImageError(f"{what} is not valid base64") from None


def bytes_to_b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def open_image(data: bytes, *, what: str = "image") -> Image.Image:
    """Decode upload bytes, refusing non-images and decompression bombs."""
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageTooLarge(f"{what} is {len(data) // 1024 // 1024} MB; the limit is {MAX_IMAGE_BYTES // 1024 // 1024} MB")
    try:
        with Image.open(io.BytesIO(data)) as probe:
            width, height = probe.size
        if width * height > MAX_IMAGE_PIXELS:
            raise ImageError(f"{what} is {width}x{height} pixels; the limit is {MAX_IMAGE_PIXELS} pixels")
        image = Image.open(io.BytesIO(data))
        image.load()
        return image
    except ImageError:
        raise
    except Exception as err:  # PIL raises many types for broken files
        raise ImageError(f"{what} could not be read as an image ({type(err).__name__})") from None


def to_png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def rgb(image: Image.Image) -> Image.Image:
    """The colour channels only; a transparent area keeps whatever colour it had
    (it is about to be repainted)."""
    return image if image.mode == "RGB" else image.convert("RGBA").convert("RGB")


def has_transparency(image: Image.Image) -> bool:
    if image.mode not in ("RGBA", "LA", "PA") and not (image.mode == "P" and "transparency" in image.info):
        return False
    alpha = image.convert("RGBA").getchannel("A")
    return alpha.getextrema()[0] < 255


def a1111_mask(mask: Image.Image, invert: bool = False) -> Image.Image:
    """AUTOMATIC1111's convention: white = repaint; a mask with a real alpha
    channel uses its alpha (opaque = repaint). `inpainting_mask_invert` flips it."""
    if has_transparency(mask):
        grey = mask.convert("RGBA").getchannel("A")
    else:
        grey = mask.convert("L")
    binary = grey.point(lambda v: 255 if v > 127 else 0)
    return binary.point(lambda v: 255 - v) if invert else binary


def openai_mask(mask: Image.Image) -> Image.Image:
    """OpenAI's convention: fully transparent pixels (alpha 0) mark the area to
    repaint. Returns ours: white = repaint."""
    alpha = mask.convert("RGBA").getchannel("A")
    return alpha.point(lambda a: 255 if a == 0 else 0)


def is_blank(mask: Image.Image) -> bool:
    """True when nothing would be repainted."""
    return mask.getextrema()[1] == 0


def input_ref(field: str) -> str:
    """How a request names an image sent alongside it: the job service stores
    `inputs[field]` and rewrites the reference to the stored file."""
    return f"input:{field}"


def text_chunks(data: bytes) -> dict[str, str]:
    """The text chunks (tEXt/iTXt/zTXt) of an image, e.g. A1111's `parameters`."""
    image = open_image(data, what="image")
    chunks = {**image.info, **(getattr(image, "text", None) or {})}
    return {k: v for k, v in chunks.items() if isinstance(k, str) and isinstance(v, str)}
