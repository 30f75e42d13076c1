"""Every error leaves the server as `{"error": {"code", "message"}}` with the
status the error carries: StudioErrors (their http_status), validation errors
(422, one line per field), HTTP errors (their status), anything else (500,
logged, no traceback to the client)."""

from __future__ import annotations

import logging
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import StudioError

log = logging.getLogger(__name__)

_HTTP_CODES = {400: "bad_request", 401: "not_authenticated", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 413: "payload_too_large", 415: "unsupported_media_type",
               422: "invalid_request", 429: "too_many_requests"}


def error_code(err: Exception) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(err).__name__).lower()


def error_response(status: int, code: str, message: str, headers: dict | None = None, **extra) -> JSONResponse:
    body = {"error": {"code": code, "message": message, **extra}}
    return JSONResponse(body, status_code=status, headers=headers)


def describe_validation(errors) -> list[dict]:
    """Pydantic errors as [{"field": "body.width", "message": "..."}]."""
    out = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body",)]
        msg = err.get("msg", "invalid value")
        msg = msg.removeprefix("Value error, ")
        out.append({"field": ".".join(loc) or "request", "message": msg})
    return out


def validation_message(details: list[dict]) -> str:
    return "; ".join(f"{d['field']}: {d['message']}" if d["field"] != "request" else d["message"] for d in details)


def install(app: FastAPI) -> None:
    @app.exception_handler(StudioError)
    async def _studio(_request: Request, err: StudioError):
        headers = {"WWW-Authenticate": 'Bearer realm="imagestudio"'} if err.http_status == 401 else None
        return error_response(err.http_status, error_code(err), str(err), headers)

    @app.exception_handler(RequestValidationError)
    async def _request_validation(_request: Request, err: RequestValidationError):
        details = describe_validation(err.errors())
        return error_response(422, "invalid_request", validation_message(details), details=details)

    @app.exception_handler(ValidationError)
    async def _validation(_request: Request, err: ValidationError):
        details = describe_validation(err.errors())
        return error_response(422, "invalid_request", validation_message(details), details=details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, err: StarletteHTTPException):
        return error_response(err.status_code, _HTTP_CODES.get(err.status_code, "http_error"), str(err.detail),
                              getattr(err, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, err: Exception):
        log.exception("unhandled error")
        return error_response(500, "internal_error", f"internal error ({type(err).__name__}); see the server log")
