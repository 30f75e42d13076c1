"""The native API (/api): models, styles, samplers, jobs with live progress
(SSE), history, favourites, reuse settings, saved prompts, estimate, me."""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Optional
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from ...errors import RequestError
from ...jobs.errors import ImageNotFound, NotFound, PayloadTooLarge
from ...jobs.service import IMAGE_FIELDS, JobService, looks_like_path
from ...request import GenerationRequest, load_image
from ...store import accounts, gallery
from ...store.accounts import Account
from ..deps import get_current_user, get_service, get_settings
from ..settings import Settings

router = APIRouter(tags=["native"])

User = Depends(get_current_user)
Service = Depends(get_service)


# --- catalog ---------------------------------------------------------------


def _model_dict(info: Any) -> dict:
    data = info.to_dict() if hasattr(info, "to_dict") else (asdict(info) if is_dataclass(info) else dict(vars(info)))
    data.pop("path", None)  # where the weights live is the server's business
    try:
        data["hash"] = info.hash
    except Exception:
        data["hash"] = None
    return data


@router.get("/health", include_in_schema=False)
def health() -> dict:
    return {"ok": True}


@router.get("/models", summary="Installed models with their credit cost")
def models(user: Account = User, service: JobService = Service) -> list[dict]:
    return [_model_dict(m) for m in service.catalog.list()]


@router.get("/samplers", summary="Sampler names")
def samplers(user: Account = User, service: JobService = Service) -> list[str]:
    return list(service.engine.samplers())


def _styles() -> list:
    try:
        from ...prompts import list_styles
    except ImportError:
        return []
    return list_styles()


#: The web page's folder: style thumbnails live in web/styles/ (styles.yaml
#: names them "styles/<slug>.png").
WEB_DIR = Path(__file__).resolve().parent.parent.parent / "web"


def _preview_file(style: Any) -> Optional[Path]:
    """A style's preview image: next to styles.yaml when one is there, else the
    web page's thumbnail of the same relative name."""
    candidates = []
    path = getattr(style, "preview_path", None)
    if path:
        candidates.append(Path(path))
    rel = getattr(style, "preview", "") or ""
    if rel and not Path(rel).is_absolute() and ".." not in Path(rel).parts:
        candidates.append(WEB_DIR / rel)
    return next((c for c in candidates if c.is_file()), None)


@router.get("/styles", summary="Style presets with preview image URLs")
def styles(user: Account = User) -> list[dict]:
    out = []
    for style in _styles():
        out.append(
            {
                "name": style.name,
                "description": getattr(style, "description", ""),
                "positive": getattr(style, "positive", ""),
                "negative": getattr(style, "negative", ""),
                "preview_url": f"/api/styles/{quote(style.name, safe='')}/preview" if _preview_file(style) else None,
            }
        )
    return out


@router.get("/styles/{name}/preview", summary="A style's preview image")
def style_preview(name: str, user: Account = User):
    for style in _styles():
        if style.name.casefold() == name.casefold():
            path = _preview_file(style)
            if path is not None:
                return FileResponse(path, media_type="image/png" if path.suffix == ".png" else None,
                                    headers={"Cache-Control": "max-age=3600"})
    raise NotFound(f"no preview image for style {name!r}")


# --- account ---------------------------------------------------------------


@router.get("/me", summary="Who you are and your credit balance")
def me(user: Account = User, service: JobService = Service, settings: Settings = Depends(get_settings)) -> dict:
    fresh = accounts.get_account(service.db, user.id)
    return {
        "name": fresh.name,
        "credits": fresh.credits,
        "unlimited": fresh.unlimited,
        "shared": settings.shared,
    }


@router.post("/estimate", summary="Credit cost of a request, without running it")
def estimate(request: GenerationRequest, user: Account = User, service: JobService = Service) -> dict:
    cost = service.estimate(user, request)
    balance = accounts.get_account(service.db, user.id).credits
    return {"cost": cost, "balance": balance, "affordable": balance is None or balance >= cost}


# --- jobs ------------------------------------------------------------------

_UPLOAD_DOCS = {
    "init_image": "The init image (img2img, inpaint, outpaint, variation, upscale).",
    "mask": "Inpaint mask: white = repaint, black = keep.",
    "keep_mask": "img2img keep mask: white = keep these pixels unchanged.",
    "control_image": "ControlNet source image (the request's control.image); the request's `control` "
                     "object gives the other control settings (type canny when absent).",
}

_JOB_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/GenerationRequest"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "description": "A GenerationRequest as JSON in `request`, and image files. A file "
                                   "replaces the reference of its field; other image references may be "
                                   "base64, a data URI or image:<id>, never a server file path.",
                    "properties": {
                        "request": {"type": "string", "description": "GenerationRequest as JSON"},
                        **{name: {"type": "string", "format": "binary", "description": _UPLOAD_DOCS.get(name, "")}
                           for name in IMAGE_FIELDS},
                    },
                    "required": ["request"],
                }
            },
        },
    }
}


async def _read_job_request(request: Request, max_upload: int) -> tuple[dict, dict[str, bytes]]:
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("multipart/form-data"):
        form = await request.form(max_files=len(IMAGE_FIELDS), max_fields=64, max_part_size=1024 * 1024)
        try:
            base: dict = {}
            fields: dict = {}
            inputs: dict[str, bytes] = {}
            for key, value in form.multi_items():
                if hasattr(value, "read"):  # an uploaded file
                    if key not in IMAGE_FIELDS:
                        raise RequestError(f"unexpected file field {key!r}; images go in {', '.join(IMAGE_FIELDS)}")
                    if value.size is not None and value.size > max_upload:
                        raise PayloadTooLarge(f"{key} upload is larger than the limit of {max_upload // 1024} KB")
                    inputs[key] = await value.read(max_upload + 1)
                elif key == "request":
                    base = _json_object(value)
                else:
                    fields[key] = value
            data = {**base, **fields}
            for key in inputs:  # the request model wants a reference where a file was sent
                if key == "control_image":
                    control = data.get("control")
                    if control is None:
                        data["control"] = {"image": "upload:control_image"}
                    elif isinstance(control, dict):
                        control.setdefault("image", "upload:control_image")
                elif not data.get(key):
                    data[key] = f"upload:{key}"
            return data, inputs
        finally:
            await form.close()
    if ctype and not ctype.startswith("application/json"):
        raise RequestError("send the request as application/json, or multipart/form-data with a 'request' field")
    return _json_object(await request.body()), {}


def _json_object(raw: Any) -> dict:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise RequestError(f"the request body is not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise RequestError("the request must be a JSON object")
    return data


@router.post("/jobs", status_code=202, summary="Submit a generation (JSON, or multipart with images)",
             openapi_extra=_JOB_BODY)
async def submit_job(request: Request, user: Account = User, service: JobService = Service) -> JSONResponse:
    data, inputs = await _read_job_request(request, service.max_upload_bytes)
    generation = GenerationRequest.model_validate(data)
    view = await run_in_threadpool(service.submit, user, generation, inputs=inputs, source="api")
    return JSONResponse(view.to_dict(), status_code=202, headers={"Location": f"/api/jobs/{view.id}"})


@router.get("/jobs", summary="Your recent jobs")
def list_jobs(state: Optional[str] = None, limit: int = Query(50, ge=1, le=200),
              user: Account = User, service: JobService = Service) -> list[dict]:
    states = state.split(",") if state else None
    return [v.to_dict() for v in service.list_jobs(user, states, limit)]


@router.get("/jobs/{job_id}", summary="Job state, progress and result images")
def get_job(job_id: str, user: Account = User, service: JobService = Service) -> dict:
    return service.get(user, job_id).to_dict()


@router.get("/jobs/{job_id}/preview", summary="The latest preview image of a running job")
def job_preview(job_id: str, user: Account = User, service: JobService = Service) -> Response:
    view = service.get(user, job_id)
    if not view.preview_png:
        raise NotFound("this job has no preview yet")
    return Response(view.preview_png, media_type="image/png", headers={"Cache-Control": "no-store"})


@router.post("/jobs/{job_id}/cancel", summary="Cancel a queued or running job (credits refunded)")
def cancel_job(job_id: str, user: Account = User, service: JobService = Service) -> dict:
    return service.cancel(user, job_id).to_dict()


def _sse(event: str, data: dict, event_id: int) -> bytes:
    return f"id: {event_id}\nevent: {event}\ndata: {json.dumps(data)}\n\n".encode()


@router.get("/jobs/{job_id}/events", summary="Server-Sent Events: queued, started, progress, done")
async def job_events(job_id: str, request: Request, user: Account = User, service: JobService = Service):
    seen = service.version
    first = await run_in_threadpool(service.get, user, job_id)  # 404 before the stream starts

    async def stream():
        nonlocal seen
        view = first
        event_id = 0
        last_position = None
        started = False
        last_step = -1
        last_ping = asyncio.get_running_loop().time()
        while True:
            out: list[bytes] = []
            if view.state == "queued" and view.position != last_position:
                last_position = view.position
                out.append(_sse("queued", {"id": view.id, "position": view.position}, event_id := event_id + 1))
            if view.state != "queued" and not started and view.started_at is not None:
                started = True
                out.append(_sse("started", {"id": view.id, "total": view.total}, event_id := event_id + 1))
            if view.state == "running" and view.step > last_step and view.step > 0:
                last_step = view.step
                out.append(_sse("progress", {
                    "id": view.id, "step": view.step, "total": view.total, "eta_seconds": view.eta_seconds,
                    "preview_url": f"/api/jobs/{view.id}/preview?step={view.step}" if view.preview_png else None,
                }, event_id := event_id + 1))
            if view.done:
                out.append(_sse("done", view.to_dict(), event_id := event_id + 1))
            for chunk in out:
                yield chunk
            if view.done:
                return
            loop = asyncio.get_running_loop()
            if not out and loop.time() - last_ping > 15:
                last_ping = loop.time()
                yield b": keep-alive\n\n"
            # Wake on a change made in this process at once; re-read anyway
            # every 0.5 s (a worker on another machine changes only the row).
            since = loop.time()
            while service.version == seen and loop.time() - since < 0.5:
                await asyncio.sleep(0.01)
            if await request.is_disconnected():
                return
            seen = service.version
            view = await run_in_threadpool(service.get, user, job_id)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


# --- images ----------------------------------------------------------------


@router.get("/images", summary="Your history, newest first (search, filter, page)")
def list_images(
    q: str = Query("", max_length=500, description="Words in the prompt or style"),
    model: Optional[str] = None,
    style: Optional[str] = None,
    favourite: Optional[bool] = None,
    limit: int = Query(24, ge=1, le=200),
    offset: int = Query(0, ge=0),
    user: Account = User,
    service: JobService = Service,
) -> dict:
    items, total = gallery.list_images(service.db, service.data_dir, user, q=q, model=model, style=style,
                                       favourite=favourite, limit=limit, offset=offset)
    next_offset = offset + len(items) if offset + len(items) < total else None
    return {"items": [i.to_dict() for i in items], "total": total, "offset": offset, "next_offset": next_offset}


@router.get("/images/{image_id}", summary="An image's metadata")
def get_image(image_id: str, user: Account = User, service: JobService = Service) -> dict:
    return gallery.get_image(service.db, service.data_dir, user, image_id).to_dict()


@router.get("/images/{image_id}/file", summary="The PNG (with its A1111 'parameters' chunk)")
def image_file(image_id: str, user: Account = User, service: JobService = Service):
    view = gallery.get_image(service.db, service.data_dir, user, image_id)
    if not Path(view.path).is_file():
        raise ImageNotFound(image_id)
    return FileResponse(view.path, media_type="image/png", filename=f"{image_id}.png",
                        content_disposition_type="inline")


@router.delete("/images/{image_id}", status_code=204, summary="Delete an image and its file")
def delete_image(image_id: str, user: Account = User, service: JobService = Service) -> Response:
    gallery.delete_image(service.db, service.data_dir, user, image_id)
    return Response(status_code=204)


class FavouriteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    favourite: bool = True


@router.post("/images/{image_id}/favourite", summary="Mark (or with favourite=false, unmark) a favourite")
def favourite(image_id: str, body: Optional[FavouriteBody] = None, user: Account = User,
              service: JobService = Service) -> dict:
    value = gallery.set_favourite(service.db, user, image_id, body.favourite if body else True)
    return {"id": image_id, "favourite": value}


@router.get("/images/{image_id}/settings", summary="The request that re-makes this image (seed included)")
def image_settings(image_id: str, user: Account = User, service: JobService = Service) -> dict:
    return gallery.image_settings(service.db, user, image_id)


# --- analyse -----------------------------------------------------------------

_ANALYSE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"image": {"type": "string", "format": "binary", "description": "The image"}},
                    "required": ["image"],
                }
            },
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"image": {"type": "string", "description":
                                             "base64, a data URI, or a stored image as image:<id> (or its id)"}},
                    "required": ["image"],
                }
            },
        },
    }
}


async def _analyse_source(request: Request, user: Account, service: JobService):
    """The image to analyse, decoded with the upload guards (size, pixels)."""
    from ..compat.images import b64_to_bytes, open_image

    ctype = request.headers.get("content-type", "")
    limit = service.max_upload_bytes
    if ctype.startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=8, max_part_size=1024 * 1024)
        try:
            upload = form.get("image")
            if upload is None or not hasattr(upload, "read"):
                raise RequestError("send the image as a file in the multipart field 'image'")
            if upload.size is not None and upload.size > limit:
                raise PayloadTooLarge(f"image upload is larger than the limit of {limit // 1024} KB")
            data = await upload.read(limit + 1)
        finally:
            await form.close()
    elif not ctype or ctype.startswith("application/json"):
        body = _json_object(await request.body())
        ref = body.get("image")
        if not isinstance(ref, str) or not ref.strip():
            raise RequestError("'image' is missing: send base64, a data URI or image:<id>")
        ref = ref.strip()
        image_id = ref[6:] if ref.startswith("image:") else ref
        if ref.startswith("image:") or (len(ref) == 32 and all(c in "0123456789abcdef" for c in ref)):
            path = await run_in_threadpool(service.image_file, user, image_id)
            return await run_in_threadpool(load_image, str(path), what="image")
        if looks_like_path(ref):  # never read: base64 is decoded, paths are refused
            raise RequestError("image: the server does not read file paths; upload the image, "
                               "send base64 or use image:<id>")
        data = b64_to_bytes(ref, what="image")
    else:
        raise RequestError("send the image as multipart/form-data (field 'image') or JSON {\"image\": base64}")
    if len(data) > limit:
        raise PayloadTooLarge(f"image upload is {len(data) // 1024} KB; the limit is {limit // 1024} KB")
    if not data:
        raise RequestError("image is empty")
    return await run_in_threadpool(open_image, data, what="image")


def analyse_image(image: Any, catalog: Any) -> dict:
    """engine.analyse's proposal (prompt, negative prompt, model, size...) as JSON."""
    from ...engine.analyse import analyse

    result = analyse(image, catalog)
    if "settings" in result:
        result.setdefault("fields", result["settings"])  # the infotext's Key: value pairs
    return jsonable_encoder(result)


@router.post("/analyse", summary="Propose a prompt, model and size for an image (its settings, or a description)",
             openapi_extra=_ANALYSE_BODY)
async def analyse_endpoint(request: Request, user: Account = User, service: JobService = Service) -> dict:
    image = await _analyse_source(request, user, service)
    return await run_in_threadpool(analyse_image, image, service.catalog)


# --- saved prompts ---------------------------------------------------------


class PromptBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(..., min_length=1, max_length=200)
    prompt: str = Field("", max_length=2000)
    negative_prompt: str = Field("", max_length=2000)
    style: Optional[str] = Field(None, max_length=100)
    settings: dict = Field(default_factory=dict, description="Other request fields to restore")


class PromptPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Optional[str] = Field(None, min_length=1, max_length=200)
    prompt: Optional[str] = Field(None, max_length=2000)
    negative_prompt: Optional[str] = Field(None, max_length=2000)
    style: Optional[str] = Field(None, max_length=100)
    settings: Optional[dict] = None


@router.get("/prompts", summary="Your saved prompts")
def list_prompts(user: Account = User, service: JobService = Service) -> list[dict]:
    return gallery.list_prompts(service.db, user)


@router.post("/prompts", status_code=201, summary="Save a prompt")
def create_prompt(body: PromptBody, user: Account = User, service: JobService = Service) -> dict:
    return gallery.save_prompt(service.db, user, body.model_dump())


@router.get("/prompts/{prompt_id}", summary="One saved prompt")
def get_prompt(prompt_id: str, user: Account = User, service: JobService = Service) -> dict:
    return gallery.get_prompt(service.db, user, prompt_id)


@router.put("/prompts/{prompt_id}", summary="Change a saved prompt")
def update_prompt(prompt_id: str, body: PromptPatch, user: Account = User, service: JobService = Service) -> dict:
    return gallery.save_prompt(service.db, user, body.model_dump(exclude_unset=True), prompt_id)


@router.delete("/prompts/{prompt_id}", status_code=204, summary="Delete a saved prompt")
def delete_prompt(prompt_id: str, user: Account = User, service: JobService = Service) -> Response:
    gallery.delete_prompt(service.db, user, prompt_id)
    return Response(status_code=204)
