"""AUTOMATIC1111-compatible API, mounted at /sdapi/v1.

Thin adapter: each route translates A1111 JSON (server/compat/a1111_models.py)
and calls the job service. txt2img/img2img block until the job ends, as in
A1111, but run through the same queue, credits and history as every other
job; they wait by polling the job from the event loop (compat/waiting.py),
so waiting clients hold no threads. The other endpoints are plain `def`s
(FastAPI runs them in its threadpool).

A1111 settings are global; ours are per user: POST /options with
`sd_model_checkpoint` switches the model that this user's A1111 calls use
(stored in the database, so it outlives a restart as A1111's config.json
does), and `img2img_color_correction` turns on img2img's colour matching for
them. /skip behaves like /interrupt, since a job here is one unit."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ...errors import StudioError
from ...jobs.errors import NotFound, PayloadTooLarge
from ...jobs.service import JobService, JobView
from ...store.accounts import Account
from ...store.settings import get_settings, update_settings
from ...store.metadata import read_parameters
from ..compat import a1111_models as a1111
from ..compat.images import b64_to_bytes, open_image, text_chunks
from ..compat.waiting import submit_and_wait
from ..deps import get_current_user, get_service
from .native import analyse_image

log = logging.getLogger(__name__)

router = APIRouter(tags=["AUTOMATIC1111 API"])



# --- helpers -----------------------------------------------------------------


def _error(err: Exception) -> JSONResponse:
    if isinstance(err, StudioError):
        return JSONResponse(a1111.error_body(err, err.http_status), status_code=err.http_status)
    log.exception("A1111 API error")
    return JSONResponse(a1111.error_body(RuntimeError("internal error; see the server log"), 500), status_code=500)


_SCOPE = "a1111"


def _user_options(service: JobService, user: Account) -> dict[str, Any]:
    """This user's A1111 settings (sd_model_checkpoint and img2img_color_correction
    change what we draw; the rest are kept for clients that read them back)."""
    return get_settings(service.db, user.id, _SCOPE)


def _current_model(service: JobService, user: Account, options: dict[str, Any]):
    """The catalog model A1111 calls use: the one chosen with POST /options, or
    the default one (also when the chosen one has since been removed)."""
    chosen = options.get("sd_model_checkpoint")
    if chosen:
        try:
            return service.catalog.get(chosen)
        except StudioError:
            update_settings(service.db, user.id, _SCOPE, {}, remove=("sd_model_checkpoint",))
    return service.catalog.get(None)


async def _generate(request: Request, service: JobService, user: Account, payload: a1111.Txt2ImgPayload):
    options = await run_in_threadpool(_user_options, service, user)
    img2img = isinstance(payload, a1111.Img2ImgPayload)
    translate = a1111.img2img_request if img2img else a1111.txt2img_request
    stored = {"default_model": options.get("sd_model_checkpoint")}
    if img2img:
        stored["color_correction"] = bool(options.get("img2img_color_correction"))
    translated = await run_in_threadpool(translate, payload, **stored)
    view = await submit_and_wait(service, user, translated, "a1111")
    return await run_in_threadpool(_result, payload, view)


def _result(payload: a1111.Txt2ImgPayload, view: JobView):
    if view.state == "failed":
        return JSONResponse(
            {"error": "GenerationFailed", "detail": view.error or "the job failed", "body": "",
             "errors": view.error or "the job failed"},
            status_code=500,
        )
    # Cancelled (POST /interrupt): A1111 answers 200 with what it has; a job
    # here keeps no partial images, so that is none.
    pngs = [Path(image.path).read_bytes() for image in view.images]
    return a1111.generation_response(payload, view.images, pngs)


def _job_count(service: JobService, user: Account) -> int:
    return len(service.list_jobs(user, states=["queued", "running"]))


# --- generation --------------------------------------------------------------


# Bodies are typed for the OpenAPI schema at /docs; a malformed one is a 422,
# as in A1111 (both are FastAPI).
@router.post("/txt2img")
async def txt2img(request: Request, payload: a1111.Txt2ImgPayload, service: JobService = Depends(get_service),
                  user: Account = Depends(get_current_user)):
    try:
        return await _generate(request, service, user, payload)
    except Exception as err:
        return _error(err)


@router.post("/img2img")
async def img2img(request: Request, payload: a1111.Img2ImgPayload, service: JobService = Depends(get_service),
                  user: Account = Depends(get_current_user)):
    try:
        return await _generate(request, service, user, payload)
    except Exception as err:
        return _error(err)


@router.post("/extra-single-image")
async def extra_single_image(payload: a1111.ExtrasPayload, service: JobService = Depends(get_service),
                             user: Account = Depends(get_current_user)):
    """Upscaling, run as an upscale-mode job (queued, charged, kept in history)."""
    try:
        translated = await run_in_threadpool(a1111.extras_request, payload)
        view = await submit_and_wait(service, user, translated, "a1111")
        if view.state != "succeeded" or not view.images:
            return _error(StudioError(view.error or f"the upscale job was {view.state}"))
        image = view.images[0]
        png = await run_in_threadpool(Path(image.path).read_bytes)
        return a1111.extras_response(png, image.parameters)
    except Exception as err:
        return _error(err)


@router.get("/upscalers")
def upscalers(service: JobService = Depends(get_service), user: Account = Depends(get_current_user)):
    from ...engine.upscale import list_upscalers  # names only: no model is loaded

    return a1111.upscaler_items(list_upscalers(service.catalog.models_dir))


@router.get("/progress")
def progress(skip_current_image: bool = False, service: JobService = Depends(get_service),
             user: Account = Depends(get_current_user)):
    running: Optional[JobView] = service.running(user)
    body = a1111.progress_response(running, queued=_job_count(service, user))
    if skip_current_image:
        body["current_image"] = None
    return body


@router.post("/interrupt")
def interrupt(service: JobService = Depends(get_service), user: Account = Depends(get_current_user)):
    running = service.running(user)
    if running is not None:
        try:
            service.cancel(user, running.id)
        except StudioError as err:  # it finished in the meantime
            log.debug("interrupt: %s", err)
    return {}


@router.post("/skip")
def skip(service: JobService = Depends(get_service), user: Account = Depends(get_current_user)):
    return interrupt(service, user)


# --- models, samplers, options ------------------------------------------------


@router.get("/sd-models")
def sd_models(service: JobService = Depends(get_service), user: Account = Depends(get_current_user)):
    return [a1111.sd_model_item(info) for info in service.catalog.list()]


@router.post("/refresh-checkpoints")
def refresh_checkpoints(service: JobService = Depends(get_service), user: Account = Depends(get_current_user)):
    # The catalog notices changes of the models folder by itself; this only
    # forces a fresh scan (e.g. after a model file was replaced in place).
    refresh = getattr(service.catalog, "refresh", None)
    if refresh is not None:
        refresh()
    return None


@router.get("/samplers")
def samplers(service: JobService = Depends(get_service), user: Account = Depends(get_current_user)):
    return a1111.sampler_items(service.engine.samplers())


@router.get("/schedulers")
def schedulers(user: Account = Depends(get_current_user)):
    return a1111.SCHEDULERS


@router.get("/scripts")
def scripts(user: Account = Depends(get_current_user)):
    return {"txt2img": [], "img2img": []}


@router.get("/options")
def get_options(service: JobService = Depends(get_service), user: Account = Depends(get_current_user)):
    options = _user_options(service, user)
    try:
        current = _current_model(service, user, options)
    except StudioError as err:
        return _error(err)
    stored = {k: v for k, v in options.items() if k != "sd_model_checkpoint"}
    return a1111.options_response(current, stored)


@router.post("/options")
def set_options(body: Any = Body(...), service: JobService = Depends(get_service),
                user: Account = Depends(get_current_user)):
    if not isinstance(body, dict):
        return _error(a1111.FieldError("the options body must be a JSON object"))
    update = dict(body)
    if "sd_model_checkpoint" in update:
        try:
            info = service.catalog.get(a1111.checkpoint_name(str(update["sd_model_checkpoint"])))
        except StudioError as err:
            return _error(err)
        update["sd_model_checkpoint"] = info.name
    try:
        update_settings(service.db, user.id, _SCOPE, update)
    except StudioError as err:
        return _error(err)
    return None


# --- metadata and styles --------------------------------------------------------


@router.post("/png-info")
def png_info(body: Any = Body(...), user: Account = Depends(get_current_user)):
    try:
        image = body.get("image", "") if isinstance(body, dict) else ""
        if not str(image).strip():
            return a1111.png_info_response(None, {})
        data = b64_to_bytes(str(image), what="image")
        return a1111.png_info_response(read_parameters(data), text_chunks(data))
    except Exception as err:
        return _error(err)


INTERROGATE_MODELS = ("clip", "deepdanbooru")


@router.post("/interrogate")
def interrogate(body: Any = Body(...), service: JobService = Depends(get_service),
                user: Account = Depends(get_current_user)):
    """A1111's "Interrogate CLIP": {"image": base64, "model": "clip"} -> {"caption"}.
    The caption is the studio's analysis (engine.analyse): the image's own
    prompt when it carries its settings, else the embedded judge's description."""
    try:
        if not isinstance(body, dict):
            raise a1111.FieldError("the interrogate body must be a JSON object {\"image\": base64, \"model\": \"clip\"}")
        image = body.get("image")
        model = body.get("model") or "clip"
        if not isinstance(image, str) or not image.strip():
            raise NotFound("Image not found: send the image as base64 (or a data URI) in 'image'")
        if not isinstance(model, str) or model not in INTERROGATE_MODELS:
            raise NotFound(f"Model not found: {model!r}; interrogate models are {', '.join(INTERROGATE_MODELS)}")
        data = b64_to_bytes(image, what="image")
        if len(data) > service.max_upload_bytes:
            raise PayloadTooLarge(f"image is {len(data) // 1024} KB; the limit is {service.max_upload_bytes // 1024} KB")
        result = analyse_image(open_image(data, what="image"), service.catalog)
        return {"caption": result.get("prompt") or ""}
    except Exception as err:
        return _error(err)


@router.get("/prompt-styles")
def prompt_styles(user: Account = Depends(get_current_user)):
    from ...prompts.styles import list_styles

    return a1111.style_items(list_styles())
