"""AUTOMATIC1111 `/sdapi/v1` shapes <-> GenerationRequest and job views.

Request fields follow A1111's StableDiffusionProcessing API models (unknown
extras are accepted and ignored, as A1111 clients send dozens of them);
responses follow its TextToImageResponse, ProgressResponse, SDModelItem,
SamplerItem, PNGInfoResponse and PromptStyleItem."""

from __future__ import annotations

import html
import json
import time
from typing import Any, Iterable, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ... import __version__
from ...engine.samplers import canonical_sampler, sampler_names
from ...errors import RequestError
from ...request import MAX_COUNT, Mode
from ...store.metadata import parse_parameters
from .common import FieldError, Translated, build_request, validation_message
from .images import a1111_mask, b64_to_bytes, bytes_to_b64, input_ref, is_blank, open_image, rgb, to_png

# Our GenerationRequest field -> the A1111 field a client sent, for messages.
_RENAME = {
    "guidance": "cfg_scale",
    "count": "batch_size",
    "strength": "denoising_strength",
    "sampler": "sampler_name",
    "variation_seed": "subseed",
    "variation_strength": "subseed_strength",
    "init_image": "init_images",
    "hires_scale": "hr_scale",
    "hires_steps": "hr_second_pass_steps",
    "hires_strength": "denoising_strength",
    "upscaler": "hr_upscaler",
    "model": "override_settings.sd_model_checkpoint",
    "control": "alwayson_scripts",
    "style": "styles",
}

# A1111 short aliases (k-diffusion names) for the samplers we have.
SAMPLER_ALIASES: dict[str, list[str]] = {
    "Euler a": ["k_euler_a", "k_euler_ancestral"],
    "Euler": ["k_euler"],
    "DPM++ 2M": ["k_dpmpp_2m"],
    "DPM++ 2M Karras": ["k_dpmpp_2m_ka"],
    "DPM++ SDE": ["k_dpmpp_sde"],
    "Heun": ["k_heun"],
    "LMS": ["k_lms"],
    "DDIM": ["ddim"],
    "UniPC": ["unipc"],
    "LCM": ["lcm"],
}

# Schedulers (A1111 >= 1.9 splits "DPM++ 2M Karras" into sampler + scheduler).
SCHEDULERS = [
    {"name": "automatic", "label": "Automatic", "aliases": None, "default_rho": -1.0, "need_inner_model": False},
    {"name": "karras", "label": "Karras", "aliases": ["karras"], "default_rho": 7.0, "need_inner_model": False},
]


class Txt2ImgPayload(BaseModel):
    """The fields of A1111's txt2img request that change what we draw."""

    model_config = ConfigDict(extra="allow")

    prompt: str = ""
    negative_prompt: str = ""
    styles: Optional[list[str]] = None
    seed: int = -1
    subseed: int = -1
    subseed_strength: float = 0.0
    sampler_name: Optional[str] = None
    sampler_index: Optional[str] = None
    scheduler: Optional[str] = None
    batch_size: int = 1
    n_iter: int = 1
    steps: Optional[int] = None
    cfg_scale: Optional[float] = None
    width: int = 512
    height: int = 512
    denoising_strength: Optional[float] = None
    override_settings: Optional[dict[str, Any]] = None
    send_images: bool = True
    save_images: bool = False
    enable_hr: bool = False
    hr_scale: float = 2.0
    hr_upscaler: Optional[str] = None
    hr_second_pass_steps: int = 0
    hr_resize_x: int = 0
    hr_resize_y: int = 0
    tiling: Optional[bool] = False
    script_name: Optional[str] = None
    alwayson_scripts: Optional[dict[str, Any]] = None


class Img2ImgPayload(Txt2ImgPayload):
    init_images: Optional[list[str]] = None
    mask: Optional[str] = None
    inpainting_mask_invert: int = 0
    mask_blur: Optional[int] = 4
    include_init_images: bool = False
    denoising_strength: Optional[float] = 0.75


def parse_payload(cls: type[BaseModel], body: Any) -> BaseModel:
    """Validate a JSON body into `cls`; errors become FieldError (HTTP 422 at the router)."""
    if not isinstance(body, dict):
        raise FieldError("the request body must be a JSON object")
    try:
        return cls.model_validate(body)
    except ValidationError as err:
        message, param = validation_message(err)
        error = FieldError(message, param)
        error.http_status = 422  # a malformed body, as FastAPI (and so A1111) answers it
        raise error from None


# --- request ----------------------------------------------------------------


def checkpoint_name(title: Optional[str]) -> Optional[str]:
    """'model [0123abcdef]' (an A1111 checkpoint title) -> 'model'."""
    if not title:
        return None
    name = title.strip()
    if name.endswith("]") and " [" in name:
        name = name[: name.rindex(" [")]
    return name or None


def sampler_for(payload: Txt2ImgPayload) -> Optional[str]:
    """sampler_name (or the older sampler_index) with A1111's separate
    `scheduler` folded in: 'DPM++ 2M' + 'karras' -> 'DPM++ 2M Karras'."""
    name = payload.sampler_name or payload.sampler_index
    if not name:
        return None
    sampler = canonical_sampler(name)
    scheduler = (payload.scheduler or "").strip().lower()
    if scheduler == "karras" and not sampler.endswith("Karras"):
        karras = f"{sampler} Karras"
        if karras in sampler_names():
            sampler = karras
    return sampler


def _common_fields(payload: Txt2ImgPayload, default_model: Optional[str]) -> dict[str, Any]:
    if payload.script_name:
        raise FieldError(f"script {payload.script_name!r} not found: Image Studio runs no A1111 scripts", "script_name")
    for name, script in (payload.alwayson_scripts or {}).items():
        args = script.get("args") if isinstance(script, dict) else script
        if name.lower() == "controlnet":
            continue  # translated by control_field
        if args and args != [False]:  # [] / [False] is how clients say "off"
            error = FieldError(f"always-on script {name!r} not found: Image Studio runs no A1111 extensions",
                               "alwayson_scripts")
            error.http_status = 422  # as A1111 answers an unknown script
            raise error
    if payload.tiling:
        raise FieldError("tiling is not supported by Image Studio", "tiling")
    count = max(1, payload.batch_size) * max(1, payload.n_iter)
    if count > MAX_COUNT:
        raise FieldError(
            f"batch_size x n_iter = {count}; Image Studio makes at most {MAX_COUNT} images per request",
            "batch_size",
        )
    styles = [s for s in (payload.styles or []) if s]
    if len(styles) > 1:
        raise FieldError(f"one style per request, got {len(styles)}: {', '.join(styles)}", "styles")
    override = payload.override_settings or {}
    fields: dict[str, Any] = {
        "prompt": payload.prompt,
        "negative_prompt": payload.negative_prompt,
        "style": styles[0] if styles else None,
        "model": checkpoint_name(override.get("sd_model_checkpoint")) or checkpoint_name(default_model),
        # A1111 rounds sizes down to the latent grid; so do we.
        "width": payload.width - payload.width % 8,
        "height": payload.height - payload.height % 8,
        "count": count,
        "steps": payload.steps,
        "guidance": payload.cfg_scale,
        "sampler": sampler_for(payload),
        "seed": payload.seed if payload.seed >= 0 else -1,
    }
    if payload.subseed_strength > 0:
        fields["variation_seed"] = payload.subseed if payload.subseed >= 0 else -1
        fields["variation_strength"] = payload.subseed_strength
    control = control_field(payload)
    if control is not None:
        fields["control"] = control
    return fields


def _unprocessable(message: str, param: str) -> FieldError:
    error = FieldError(message, param)
    error.http_status = 422
    return error


def control_field(payload: Txt2ImgPayload) -> Optional[dict[str, Any]]:
    """The sd-webui-controlnet extension's unit (alwayson_scripts.ControlNet.args)
    -> our `control`. Its modules map to our preprocessors: canny -> canny,
    scribble_* / invert -> scribble, none -> the image already is the map."""
    units: list = []
    for name, script in (payload.alwayson_scripts or {}).items():
        if name.lower() == "controlnet":
            units = (script.get("args") if isinstance(script, dict) else script) or []
    units = [u for u in units if isinstance(u, dict) and u.get("enabled", True) and (u.get("image") or u.get("input_image"))]
    if not units:
        return None
    if len(units) > 1:
        raise _unprocessable(f"{len(units)} ControlNet units given; Image Studio applies one per request",
                             "alwayson_scripts")
    unit = units[0]
    module = str(unit.get("module") or "none").lower()
    model = checkpoint_name(unit.get("model"))
    model = None if model in (None, "None", "none") else model
    if module == "none":
        kind, preprocess = ("scribble" if model and "scribble" in model.lower() else "canny"), False
    elif module.startswith("canny"):
        kind, preprocess = "canny", True
    elif module.startswith(("scribble", "invert")):
        kind, preprocess = "scribble", True
    else:
        raise _unprocessable(f"ControlNet module {module!r} is not available; use canny, scribble or none",
                             "alwayson_scripts")
    image = unit.get("image") or unit.get("input_image")
    if isinstance(image, dict):  # {"image": ..., "mask": ...}, an older form
        image = image.get("image")
    source = open_image(b64_to_bytes(str(image), what="ControlNet image"), what="ControlNet image")
    return {
        "type": kind,
        # Inline; the job service stores it as the job's control_image input
        # (the job's request then shows upload:control_image).
        "image": "data:image/png;base64," + bytes_to_b64(to_png(rgb(source))),
        "model": model,
        "weight": float(unit.get("weight", 1.0)),
        "start": float(unit.get("guidance_start", 0.0)),
        "end": float(unit.get("guidance_end", 1.0)),
        "preprocess": preprocess,
    }


# A1111's latent upscalers have no pixel-space twin; Lanczos is the closest.
def upscaler_name(name: Optional[str]) -> str:
    if not name or name == "None" or name.startswith("Latent"):
        return "Lanczos"
    return name


def _hires_fields(payload: Txt2ImgPayload, width: int, height: int) -> dict[str, Any]:
    """enable_hr: draw at width x height, upscale by hr_scale (or to
    hr_resize_x/y), then repaint at denoising_strength."""
    scale = payload.hr_scale
    if payload.hr_resize_x > 0 or payload.hr_resize_y > 0:
        scale = max(payload.hr_resize_x / max(width, 1), payload.hr_resize_y / max(height, 1))
    return {
        "hires_scale": scale,
        "hires_strength": payload.denoising_strength if payload.denoising_strength is not None else 0.7,
        "hires_steps": payload.hr_second_pass_steps or None,
        "upscaler": upscaler_name(payload.hr_upscaler),
    }


def txt2img_request(payload: Txt2ImgPayload, default_model: Optional[str] = None) -> Translated:
    fields = _common_fields(payload, default_model)
    fields["mode"] = Mode.txt2img
    if payload.enable_hr:
        fields.update(_hires_fields(payload, fields["width"], fields["height"]))
    return Translated(build_request(fields, _RENAME))


def img2img_request(payload: Img2ImgPayload, default_model: Optional[str] = None,
                    color_correction: bool = False) -> Translated:
    """`color_correction`: the user's stored `img2img_color_correction` option (POST
    /options); the request's override_settings win over it."""
    if not payload.init_images:
        raise FieldError("init_images is empty: img2img needs one image", "init_images")
    fields = _common_fields(payload, default_model)
    init = open_image(b64_to_bytes(payload.init_images[0], what="init_images[0]"), what="init_images[0]")
    inputs = {"init_image": to_png(rgb(init))}
    fields.update(mode=Mode.img2img, init_image=input_ref("init_image"))
    if payload.denoising_strength is not None:
        fields["strength"] = payload.denoising_strength
    if payload.mask:
        mask = a1111_mask(open_image(b64_to_bytes(payload.mask, what="mask"), what="mask"),
                          invert=bool(payload.inpainting_mask_invert))
        if mask.size != init.size:
            mask = mask.resize(init.size)
        if is_blank(mask):
            raise FieldError("the mask marks nothing to repaint (no white pixels)", "mask")
        inputs["mask"] = to_png(mask)
        fields.update(mode=Mode.inpaint, mask=input_ref("mask"))
        if payload.mask_blur is not None:
            fields["mask_blur"] = payload.mask_blur
    override = payload.override_settings or {}
    if bool(override.get("img2img_color_correction", color_correction)) and fields["mode"] is Mode.img2img:
        # A1111 matches inpaint results too; here inpaint keeps the unmasked pixels as
        # they were, and matching would pull a repainted object's new colour back
        fields["color_correction"] = True
    return Translated(build_request(fields, _RENAME), inputs)


class ExtrasPayload(BaseModel):
    """POST /extra-single-image (A1111's "Extras" tab): upscaling."""

    model_config = ConfigDict(extra="allow")

    image: str = ""
    resize_mode: int = 0
    upscaling_resize: float = 2.0
    upscaling_resize_w: int = 512
    upscaling_resize_h: int = 512
    upscaler_1: Optional[str] = "None"
    upscaler_2: Optional[str] = "None"
    extras_upscaler_2_visibility: float = 0.0
    gfpgan_visibility: float = 0.0
    codeformer_visibility: float = 0.0


def extras_request(payload: ExtrasPayload) -> Translated:
    """Upscale mode: by `upscaling_resize`, or (resize_mode 1) to fit
    upscaling_resize_w x upscaling_resize_h."""
    if payload.gfpgan_visibility > 0 or payload.codeformer_visibility > 0:
        raise FieldError("face restoration (GFPGAN/CodeFormer) is not available in Image Studio", "gfpgan_visibility")
    if payload.upscaler_2 not in (None, "", "None") and payload.extras_upscaler_2_visibility > 0:
        raise FieldError("a second upscaler is not supported: use upscaler_1 only", "upscaler_2")
    if not payload.image.strip():
        raise FieldError("image is empty: send the image to upscale", "image")
    data = b64_to_bytes(payload.image, what="image")
    width, height = open_image(data, what="image").size
    factor = payload.upscaling_resize
    if payload.resize_mode == 1:
        factor = max(payload.upscaling_resize_w / width, payload.upscaling_resize_h / height)
    fields = {
        "mode": Mode.upscale,
        "init_image": input_ref("init_image"),
        "upscale_factor": factor,
        "upscaler": upscaler_name(payload.upscaler_1),
    }
    return Translated(build_request(fields, {**_RENAME, "upscale_factor": "upscaling_resize", "upscaler": "upscaler_1"}),
                      {"init_image": data})


def extras_response(png: bytes, infotext: str) -> dict[str, Any]:
    """ExtrasSingleImageResponse: the image and an HTML line of what was done."""
    return {"html_info": f"<p>{html.escape(infotext)}</p>", "image": bytes_to_b64(png)}


def upscaler_items(names: Iterable[str]) -> list[dict[str, Any]]:
    """UpscalerItem per upscaler name (built-ins and the user's model files)."""
    return [{"name": n, "model_name": None if n in ("Lanczos", "Nearest") else n, "model_path": None,
             "model_url": None, "scale": 4.0} for n in names]


# --- responses --------------------------------------------------------------


def echo_parameters(payload: Txt2ImgPayload) -> dict[str, Any]:
    """The request as A1111 echoes it back, without the (large) input images."""
    data = payload.model_dump()
    if isinstance(payload, Img2ImgPayload) and not payload.include_init_images:
        data["init_images"] = None
        data["mask"] = None
    return data


def _number(value: Optional[str], kind=float, default=None):
    try:
        return kind(value) if value not in (None, "") else default
    except ValueError:
        return default


def generation_info(payload: Txt2ImgPayload, images: Iterable[Any], *, model_name: Optional[str] = None,
                    model_hash: Optional[str] = None) -> dict[str, Any]:
    """A1111's `info` object (sent as a JSON string) from our stored images.

    `images` are job image views with `seed`, `width`, `height` and
    `parameters` (the infotext written into the PNG), which hold what was
    really run (drawn seeds, model defaults filled in)."""
    images = list(images)
    infotexts = [getattr(im, "parameters", "") or "" for im in images]
    first = parse_parameters(infotexts[0]) if infotexts and infotexts[0] else {}
    seeds = [int(im.seed) for im in images]
    variation_seed = _number(first.get("Variation seed"), int, -1)
    variation_strength = _number(first.get("Variation seed strength"), float, 0.0)
    prompt = first.get("prompt", payload.prompt)
    negative = first.get("negative_prompt", payload.negative_prompt)
    count = len(images)
    return {
        "prompt": prompt,
        "all_prompts": [parse_parameters(t).get("prompt", prompt) if t else prompt for t in infotexts],
        "negative_prompt": negative,
        "all_negative_prompts": [negative] * count,
        "seed": seeds[0] if seeds else payload.seed,
        "all_seeds": seeds,
        "subseed": variation_seed,
        "all_subseeds": [variation_seed] * count,
        "subseed_strength": variation_strength,
        "width": images[0].width if images else payload.width,
        "height": images[0].height if images else payload.height,
        "sampler_name": first.get("Sampler", payload.sampler_name or payload.sampler_index),
        "cfg_scale": _number(first.get("CFG scale"), float, payload.cfg_scale),
        "steps": _number(first.get("Steps"), int, payload.steps),
        "batch_size": count,
        "restore_faces": False,
        "face_restoration_model": None,
        "sd_model_name": first.get("Model", model_name),
        "sd_model_hash": first.get("Model hash", model_hash),
        "sd_vae_name": None,
        "sd_vae_hash": None,
        "seed_resize_from_w": -1,
        "seed_resize_from_h": -1,
        "denoising_strength": _number(first.get("Denoising strength"), float, payload.denoising_strength),
        "extra_generation_params": {k: v for k, v in first.items() if k in ("Style", "Mode", "Mask blur")},
        "index_of_first_image": 0,
        "infotexts": infotexts,
        "styles": list(payload.styles or []),
        "job_timestamp": time.strftime("%Y%m%d%H%M%S"),
        "clip_skip": 1,
        "is_using_inpainting_conditioning": False,
        "version": f"imagestudio {__version__}",
    }


def generation_response(payload: Txt2ImgPayload, images: list[Any], pngs: list[bytes], **model) -> dict[str, Any]:
    """{images: [base64 PNG], parameters: {request}, info: "<json>"}."""
    return {
        "images": [bytes_to_b64(png) for png in pngs] if payload.send_images else [],
        "parameters": echo_parameters(payload),
        "info": json.dumps(generation_info(payload, images, **model)),
    }


def progress_response(job: Optional[Any], *, queued: int = 0, interrupted: bool = False) -> dict[str, Any]:
    """A1111's ProgressResponse from the running job view (or None when idle).

    `job` has step, total, eta_seconds, preview_png, id and state."""
    state = {
        "skipped": False,
        "interrupted": interrupted,
        "stopping_generation": False,
        "job": "",
        "job_count": queued,
        "job_timestamp": "0",
        "job_no": 0,
        "sampling_step": 0,
        "sampling_steps": 0,
    }
    if job is None:
        return {"progress": 0.0, "eta_relative": 0.0, "state": state, "current_image": None, "textinfo": None}
    step, total = int(job.step or 0), int(job.total or 0)
    state.update(
        job=str(job.id),
        job_count=max(1, queued),
        sampling_step=step,
        sampling_steps=total,
        interrupted=interrupted or str(getattr(job, "state", "")) == "cancelled",
    )
    preview = getattr(job, "preview_png", None)
    return {
        "progress": min(1.0, step / total) if total else 0.0,
        "eta_relative": float(job.eta_seconds or 0.0),
        "state": state,
        "current_image": bytes_to_b64(preview) if preview else None,
        "textinfo": f"Sampling step {step}/{total}" if total else None,
    }


def checkpoint_title(info: Any) -> str:
    return f"{info.name} [{info.hash}]"


def sd_model_item(info: Any) -> dict[str, Any]:
    """SDModelItem from a catalog ModelInfo."""
    return {
        "title": checkpoint_title(info),
        "model_name": info.name,
        "hash": info.hash,
        "sha256": info.sha256,
        "filename": info.path,
        "config": None,
    }


def sampler_items(names: Iterable[str]) -> list[dict[str, Any]]:
    items = []
    for name in names:
        options = {"scheduler": "karras"} if name.endswith("Karras") else {}
        items.append({"name": name, "aliases": SAMPLER_ALIASES.get(name, []), "options": options})
    return items


def style_items(styles: Iterable[Any]) -> list[dict[str, Any]]:
    """PromptStyleItem: A1111 styles also put the user's prompt at `{prompt}`."""
    return [{"name": s.name, "prompt": s.positive, "negative_prompt": s.negative} for s in styles]


def options_response(current: Any, stored: dict[str, Any]) -> dict[str, Any]:
    """GET /options: the settings a client reads, with the current checkpoint."""
    return {
        "samples_format": "png",
        "CLIP_stop_at_last_layers": 1,
        "sd_vae": "Automatic",
        "show_progress_every_n_steps": 1,
        **stored,
        "sd_model_checkpoint": checkpoint_title(current),
        "sd_checkpoint_hash": None,
    }


def png_info_response(infotext: Optional[str], chunks: dict[str, str]) -> dict[str, Any]:
    """PNGInfoResponse: the infotext, other text chunks, and the parsed fields
    (with Size split into Size-1/Size-2 as A1111 does)."""
    info = infotext or ""
    params: dict[str, Any] = parse_parameters(info) if info else {}
    if params.get("prompt") is not None:
        params["Prompt"] = params.pop("prompt")
    if params.get("negative_prompt") is not None:
        params["Negative prompt"] = params.pop("negative_prompt")
    size = params.get("Size")
    if isinstance(size, str) and "x" in size:
        w, _, h = size.partition("x")
        params["Size-1"], params["Size-2"] = w.strip(), h.strip()
    items = {k: v for k, v in chunks.items() if k != "parameters"}
    return {"info": info, "items": items, "parameters": params}


def error_body(err: Exception, status: int) -> dict[str, Any]:
    """A1111's error shape for a failed API call."""
    message = str(err) or type(err).__name__
    return {"error": type(err).__name__, "detail": message, "body": "", "errors": message}


__all__ = [
    "Txt2ImgPayload", "Img2ImgPayload", "parse_payload", "txt2img_request", "img2img_request",
    "generation_response", "generation_info", "progress_response", "sd_model_item", "sampler_items",
    "style_items", "options_response", "png_info_response", "checkpoint_name", "checkpoint_title",
    "error_body", "RequestError", "SCHEDULERS",
]
