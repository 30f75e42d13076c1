"""FastAPI dependencies: the job service, settings and the acting user.

Local mode: every request acts for the implicit local user (unlimited credits).
Shared mode: a request needs an API key, as `Authorization: Bearer <key>`,
HTTP Basic with the key as password (what the webuiapi client sends), or an
`X-API-Key` header; otherwise 401."""

from __future__ import annotations

import base64
import binascii
from typing import Optional

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from ..jobs.errors import NotAuthenticated
from ..jobs.service import JobService
from ..store.accounts import Account, account_for_key
from .settings import Settings


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_service(request: Request) -> JobService:
    return request.app.state.service


def key_from_headers(request: Request) -> Optional[str]:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return value
    if scheme.lower() == "basic" and value:
        try:
            user, _, password = base64.b64decode(value).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        return password or user or None
    return request.headers.get("x-api-key") or None


async def get_current_user(request: Request) -> Account:
    settings: Settings = request.app.state.settings
    if not settings.shared:
        return request.app.state.local_user
    key = key_from_headers(request)
    if not key:
        raise NotAuthenticated("this server is shared: send your API key as 'Authorization: Bearer <key>'")
    account = await run_in_threadpool(account_for_key, request.app.state.service.db, key)
    if account is None:
        raise NotAuthenticated("unknown or revoked API key")
    return account
