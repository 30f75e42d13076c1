"""OpenAI Images API, mounted at /v1/images: generations, edits, variations.

Thin adapter: requests are translated by server/compat/openai_models.py and
run as ordinary jobs (same queue, credits and history); responses and errors
take OpenAI's shapes so the openai SDK works unchanged, typed exceptions
included. `url` results point at the native image file endpoint, which
accepts the same API key.

Errors for which a retry would only repeat the failure, or run (and charge)
the job again, carry `x-should-retry: false`, which the SDK obeys."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional, Union

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from ...errors import StudioError
from ...jobs.errors import QueueUnavailable
from ...jobs.service import JobService, JobView
from ...store.accounts import Account
from ...store.metadata import parse_parameters
from ..compat import openai_models as oai
from ..compat.common import FieldError, Translated
from ..compat.images import ImageTooLarge, bytes_to_b64
from ..compat.waiting import submit_and_wait
from ..deps import get_current_user, get_service

log = logging.getLogger(__name__)

router = APIRouter(tags=["OpenAI Images API"])


def _error_response(status: int, body: dict, *, retry: bool = False) -> JSONResponse:
    headers = {} if retry else {"x-should-retry": "false"}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="imagestudio"'
    return JSONResponse(body, status_code=status, headers=headers)


def _error(err: Exception) -> JSONResponse:
    if isinstance(err, HTTPException):
        raise err  # e.g. the body limit's 413, answered by the server's own handlers
    if not isinstance(err, StudioError):
        log.exception("OpenAI API error")
    status, body = oai.error_for(err)
    return _error_response(status, body, retry=isinstance(err, QueueUnavailable))


async def openai_user(request: Request) -> Union[Account, StudioError]:
    """The acting user, or the auth error to answer in OpenAI's shape."""
    try:
        return await get_current_user(request)
    except StudioError as err:
        return err


def _result(request: Request, view: JobView, fmt: str, prompt: str) -> JSONResponse | dict:
    if view.state == "failed":
        return _error_response(500, oai.error_body(view.error or "the generation failed", 500))
    if view.state == "cancelled":
        return _error_response(409, oai.error_body("the job was cancelled before it finished", 409,
                                                   code="cancelled"))
    base = str(request.base_url).rstrip("/")
    items = []
    for image in view.images:
        final_prompt = parse_parameters(image.parameters).get("prompt") if image.parameters else None
        if fmt == "b64_json":
            items.append(oai.image_item(fmt, b64=bytes_to_b64(Path(image.path).read_bytes()),
                                        prompt=prompt, final_prompt=final_prompt))
        else:
            url = image.url if image.url.startswith("http") else base + image.url
            items.append(oai.image_item(fmt, url=url, prompt=prompt, final_prompt=final_prompt))
    created = int(view.finished_at or view.created_at or 0) or None
    return oai.images_response(items, created)


async def _serve(request: Request, service: JobService, translated: Translated, user: Account, fmt: str, prompt: str):
    view = await submit_and_wait(service, user, translated, "openai")
    return await run_in_threadpool(_result, request, view, fmt, prompt)


# --- multipart ------------------------------------------------------------------


async def _form(request: Request):
    try:
        return await request.form(max_files=4, max_fields=64)
    except HTTPException:
        raise
    except Exception as err:  # malformed multipart, or a JSON body sent by mistake
        raise FieldError(f"expected a multipart/form-data body ({type(err).__name__})") from None


def _text(form, name: str) -> Optional[str]:
    value = form.get(name)
    if value is None or isinstance(value, UploadFile):
        return None
    return str(value)


async def _file(form, name: str, *, required: bool, limit: int) -> Optional[bytes]:
    """An uploaded file (`image` may also come as `image[]`, the SDK's array form;
    of several images the first is used)."""
    uploads = [v for key in (name, f"{name}[]") for v in form.getlist(key) if isinstance(v, UploadFile)]
    if not uploads:
        if required:
            raise FieldError(f"{name} is missing: upload it as a file", name)
        return None
    data = await uploads[0].read(limit + 1)
    if len(data) > limit:
        raise ImageTooLarge(f"{name} is larger than the upload limit of {limit // 1024 // 1024} MB")
    return data


def _limit(request: Request) -> int:
    return int(getattr(request.app.state.settings, "max_upload_bytes", 20 * 1024 * 1024))


# --- routes ----------------------------------------------------------------------

# Bodies are parsed by hand (to answer errors in OpenAI's shape); these
# describe them in the OpenAPI schema at /docs.
_STR = {"type": "string"}
_FORM = {"n": {"type": "integer", "minimum": 1, "maximum": 4}, "size": {**_STR, "example": "512x512"},
         "response_format": {"type": "string", "enum": list(oai.RESPONSE_FORMATS)},
         "model": {**_STR, "description": "a catalog model name; OpenAI model names mean the default model"}}
_FILE = {"type": "string", "format": "binary"}


def _body(schema: dict, media: str = "multipart/form-data") -> dict:
    return {"requestBody": {"required": True, "content": {media: {"schema": schema}}}}


_GENERATIONS_DOC = _body(oai.GenerationsBody.model_json_schema(), "application/json")
_EDITS_DOC = _body({"type": "object", "required": ["image", "prompt"], "properties": {
    "image": _FILE, "mask": {**_FILE, "description": "fully transparent pixels mark the area to repaint"},
    "prompt": _STR, **_FORM}})
_VARIATIONS_DOC = _body({"type": "object", "required": ["image"], "properties": {"image": _FILE, **_FORM}})


@router.post("/generations", openapi_extra=_GENERATIONS_DOC)
async def generations(request: Request, service: JobService = Depends(get_service),
                      user: Union[Account, StudioError] = Depends(openai_user)):
    if isinstance(user, StudioError):
        return _error(user)
    try:
        try:
            body: Any = await request.json()
        except ValueError:
            raise FieldError("the request body must be JSON") from None
        parsed = oai.parse_generations(body)
        fmt = oai.response_format(parsed.response_format, parsed.model)
        translated = oai.generation_request(parsed)
        return await _serve(request, service, translated, user, fmt, parsed.prompt)
    except Exception as err:
        return _error(err)


@router.post("/edits", openapi_extra=_EDITS_DOC)
async def edits(request: Request, service: JobService = Depends(get_service),
                user: Union[Account, StudioError] = Depends(openai_user)):
    if isinstance(user, StudioError):
        return _error(user)
    try:
        form = await _form(request)
        oai.check_unsupported(_text(form, "stream"), _text(form, "output_format"))
        limit = _limit(request)
        image = await _file(form, "image", required=True, limit=limit)
        mask = await _file(form, "mask", required=False, limit=limit)
        prompt = _text(form, "prompt") or ""
        model = _text(form, "model")
        fmt = oai.response_format(_text(form, "response_format"), model)
        translated = await run_in_threadpool(
            oai.edit_request, image, mask, prompt, n=_text(form, "n"), size=_text(form, "size"), model=model)
        return await _serve(request, service, translated, user, fmt, prompt)
    except Exception as err:
        return _error(err)


@router.post("/variations", openapi_extra=_VARIATIONS_DOC)
async def variations(request: Request, service: JobService = Depends(get_service),
                     user: Union[Account, StudioError] = Depends(openai_user)):
    if isinstance(user, StudioError):
        return _error(user)
    try:
        form = await _form(request)
        oai.check_unsupported(_text(form, "stream"), _text(form, "output_format"))
        image = await _file(form, "image", required=True, limit=_limit(request))
        model = _text(form, "model")
        fmt = oai.response_format(_text(form, "response_format"), model)
        translated = await run_in_threadpool(
            oai.variation_request, image, n=_text(form, "n"), size=_text(form, "size"), model=model)
        return await _serve(request, service, translated, user, fmt, "")
    except Exception as err:
        return _error(err)
