"""Request body size limit, enforced before anything is parsed: a declared
Content-Length over the limit is refused at once, and a streamed body is
counted as it arrives."""

from __future__ import annotations

from starlette.exceptions import HTTPException

from .errors import error_response


class BodyTooLarge(HTTPException):
    """An HTTPException so FastAPI's body parsing passes it on unchanged
    (it turns other exceptions into a 400) and the error handler answers 413."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"the request body is larger than the limit of {max_bytes / 1024 / 1024:g} MB")


class BodyLimitMiddleware:
    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _refusal(self):
        mb = self.max_bytes / 1024 / 1024
        return error_response(413, "payload_too_large", f"the request body is larger than the limit of {mb:g} MB")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    if int(value) > self.max_bytes:
                        return await self._refusal()(scope, receive, send)
                except ValueError:
                    pass
        received = 0
        started = False

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._refusal()(scope, receive, send)
