"""OpenAI Images API shapes (`/v1/images/generations`, `/edits`,
`/variations`) <-> GenerationRequest, and OpenAI's error object."""

from __future__ import annotations

import time
from typing import Any, Iterable, Optional

from pydantic import BaseModel, ConfigDict, ValidationError

from ...errors import ModelNotFound, RequestError, StudioError
from ...request import MAX_COUNT, Mode
from ...store.metadata import parse_parameters, read_parameters
from .common import FieldError, Translated, build_request, validation_message
from .images import has_transparency, input_ref, is_blank, open_image, openai_mask, rgb, to_png

#: OpenAI's own model names: they all mean "the studio's default model".
OPENAI_MODEL_NAMES = ("dall-e-2", "dall-e-3")
RESPONSE_FORMATS = ("url", "b64_json")

_RENAME = {"count": "n", "init_image": "image", "width": "size", "height": "size"}

#: Image Studio extensions a client may add (openai SDK: `extra_body={...}`).
EXTENSIONS = ("negative_prompt", "seed", "steps", "guidance", "sampler", "enhance")
#: OpenAI's own `style` values (DALL-E 3); any other value names one of our style presets.
OPENAI_STYLES = ("vivid", "natural")


class GenerationsBody(BaseModel):
    """POST /v1/images/generations. Fields we have no use for (quality,
    style, background, moderation...) are accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    prompt: str
    n: Optional[int] = None
    size: Optional[str] = None
    model: Optional[str] = None
    response_format: Optional[str] = None
    user: Optional[str] = None


def parse_generations(body: Any) -> GenerationsBody:
    if not isinstance(body, dict):
        raise FieldError("the request body must be a JSON object")
    try:
        return GenerationsBody.model_validate(body)
    except ValidationError as err:
        message, param = validation_message(err)
        raise FieldError(message, param) from None


def check_unsupported(stream: Any = None, output_format: Any = None) -> None:
    """Options whose answer we cannot give in the shape the client expects."""
    if str(stream).lower() in ("true", "1"):
        raise FieldError("stream is not supported by Image Studio: omit it and the result comes in one response",
                         "stream")
    if output_format not in (None, "", "png"):
        raise FieldError(f"output_format {output_format!r} is not supported: Image Studio returns PNG", "output_format")


def studio_model(model: Optional[str]) -> Optional[str]:
    """OpenAI model names map to our default model (None); anything else is
    a catalog name, checked by the job service."""
    if not model or model in OPENAI_MODEL_NAMES or model.startswith("gpt-image"):
        return None
    return model


def response_format(value: Optional[str], model: Optional[str]) -> str:
    """OpenAI's default: URLs for DALL-E models, base64 otherwise."""
    if value is None:
        return "url" if model in OPENAI_MODEL_NAMES else "b64_json"
    if value not in RESPONSE_FORMATS:
        raise FieldError(f"response_format must be 'url' or 'b64_json', got {value!r}", "response_format")
    return value


def parse_count(n: Any) -> int:
    if n is None or n == "":
        return 1
    try:
        count = int(n)
    except (TypeError, ValueError):
        raise FieldError(f"n must be an integer, got {n!r}", "n") from None
    if not 1 <= count <= MAX_COUNT:
        raise FieldError(f"n must be between 1 and {MAX_COUNT} on Image Studio, got {count}", "n")
    return count


def parse_size(size: Optional[str]) -> dict[str, int]:
    """'512x512' -> {'width': 512, 'height': 512}; None or 'auto' -> {} (the
    model's native size, or the input image's for edits and variations)."""
    if size is None or size.strip() in ("", "auto"):
        return {}
    width, sep, height = size.strip().lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit():
        raise FieldError(f"size must look like '512x512' or be 'auto', got {size!r}", "size")
    return {"width": int(width), "height": int(height)}


def generation_request(body: GenerationsBody) -> Translated:
    extra = body.model_extra or {}
    check_unsupported(extra.get("stream"), extra.get("output_format"))
    if not body.prompt.strip():
        raise FieldError("prompt is empty: describe what to draw", "prompt")
    fields = {
        "mode": Mode.txt2img,
        "prompt": body.prompt,
        "count": parse_count(body.n),
        "model": studio_model(body.model),
        **parse_size(body.size),
        **extensions(extra),
    }
    return Translated(build_request(fields, _RENAME))


def extensions(extra: dict[str, Any]) -> dict[str, Any]:
    """Our fields a client may send beside OpenAI's (seed, steps, a style preset...)."""
    fields = {name: extra[name] for name in EXTENSIONS if extra.get(name) is not None}
    style = extra.get("style")
    if isinstance(style, str) and style.strip() and style.strip().lower() not in OPENAI_STYLES:
        fields["style"] = style.strip()
    return fields


def edit_request(image: bytes, mask: Optional[bytes], prompt: str, *, n: Any = None, size: Optional[str] = None,
                 model: Optional[str] = None) -> Translated:
    """Inpaint: the mask's (or, without one, the image's own) fully transparent
    pixels are repainted; OpenAI regenerates that area from scratch, so the
    denoising strength is 1."""
    if not (prompt or "").strip():
        raise FieldError("prompt is empty: describe the edit", "prompt")
    picture = open_image(image, what="image")
    if mask is not None:
        mask_image = open_image(mask, what="mask")
        if mask_image.size != picture.size:
            raise FieldError(
                f"mask is {mask_image.size[0]}x{mask_image.size[1]} but image is "
                f"{picture.size[0]}x{picture.size[1]}: they must be the same size", "mask")
        if not has_transparency(mask_image):
            raise FieldError("mask has no transparent pixels: make the area to edit fully transparent", "mask")
        ours = openai_mask(mask_image)
    else:
        if not has_transparency(picture):
            raise FieldError("image has no transparent area and no mask was given: "
                             "send a mask whose transparent pixels mark the area to edit", "mask")
        ours = openai_mask(picture)
    if is_blank(ours):
        raise FieldError("the mask has no fully transparent (alpha 0) pixels to repaint", "mask")
    fields = {
        "mode": Mode.inpaint,
        "prompt": prompt,
        "count": parse_count(n),
        "model": studio_model(model),
        "init_image": input_ref("init_image"),
        "mask": input_ref("mask"),
        "strength": 1.0,
        **parse_size(size),
    }
    return Translated(build_request(fields, _RENAME), {"init_image": to_png(rgb(picture)), "mask": to_png(ours)})


def variation_request(image: bytes, *, n: Any = None, size: Optional[str] = None,
                      model: Optional[str] = None) -> Translated:
    """Variations of an image. OpenAI's call has no prompt; when the image
    carries an A1111 infotext (every studio image does) its prompts are reused,
    so a studio image varies faithfully. (They are read here because stored
    uploads are re-encoded without their text chunks.)"""
    open_image(image, what="image")  # refuse non-images before queueing
    infotext = read_parameters(image)
    parsed = parse_parameters(infotext) if infotext else {}
    fields = {
        "mode": Mode.variation,
        "prompt": parsed.get("prompt", ""),
        "negative_prompt": parsed.get("negative_prompt", ""),
        "count": parse_count(n),
        "model": studio_model(model),
        "init_image": input_ref("init_image"),
        **parse_size(size),
    }
    return Translated(build_request(fields, _RENAME), {"init_image": image})


def images_response(items: Iterable[dict[str, Any]], created: Optional[int] = None) -> dict[str, Any]:
    """{created, data: [{b64_json | url, revised_prompt?}]}."""
    return {"created": int(created if created is not None else time.time()), "data": list(items)}


def image_item(fmt: str, *, b64: Optional[str] = None, url: Optional[str] = None,
               prompt: str = "", final_prompt: Optional[str] = None) -> dict[str, Any]:
    """One `data` entry; `revised_prompt` only when a style or enhancement
    changed what was drawn."""
    item: dict[str, Any] = {"b64_json": b64} if fmt == "b64_json" else {"url": url}
    if final_prompt and final_prompt.strip() != (prompt or "").strip():
        item["revised_prompt"] = final_prompt
    return item


_TYPES = {401: "invalid_request_error", 402: "insufficient_quota", 403: "permission_error",
          404: "invalid_request_error", 409: "invalid_request_error", 413: "invalid_request_error",
          422: "invalid_request_error", 429: "rate_limit_exceeded"}


def error_status(err: Exception) -> int:
    return int(getattr(err, "http_status", 500)) if isinstance(err, StudioError) else 500


def error_body(message: str, status: int, *, param: Optional[str] = None, code: Optional[str] = None) -> dict[str, Any]:
    """OpenAI's error object, which the openai SDK turns into typed exceptions."""
    if code is None:
        code = {401: "invalid_api_key", 402: "insufficient_quota", 413: "file_too_large"}.get(status)
    kind = _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def error_for(err: Exception) -> tuple[int, dict[str, Any]]:
    status = error_status(err)
    param = getattr(err, "param", None)
    code = "model_not_found" if isinstance(err, ModelNotFound) else None
    if isinstance(err, RequestError) and code is None and status == 400:
        code = "invalid_value" if param else None
    message = str(err) if isinstance(err, StudioError) else "internal error: the studio could not finish this request"
    return status, error_body(message, status, param=param, code=code)
