"""Request bodies over MAX_REQUEST_BODY_BYTES are refused with 413 in the one error shape before
they are read whole: at once when Content-Length says so, else (chunked bodies) as soon as the
bytes received pass the limit. Without it a 50 MB body was buffered and parsed before its 422.

Pure ASGI, inside ObservabilityMiddleware (so the 413 carries the request id and is logged and
counted), so nothing buffers the body before the count. Starlette's own body limit answers a
request whose route reads no body in plain text, outside the error shape; hence this one."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response
from core.settings import Settings, get_settings

CODE = "payload_too_large"


class BodyTooLarge(HTTPException):
    """Raised from `receive` once a body without (or with a lying) Content-Length passes the
    limit: an HTTPException, so FastAPI's body reader lets it through to the error handlers."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body exceeds {limit} bytes")
        self.limit = limit


def too_large(limit: int) -> JSONResponse:
    return error_response(
        413,
        CODE,
        f"the request body exceeds {limit} bytes",
        {"max_bytes": limit},
        {"Connection": "close"},  # the rest of the body is never read
    )


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses a malformed one before we see it
    return None


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, settings: Settings | None) -> None:
        """`settings` None: the process's settings, read at the first request (building the app
        reads nothing)."""
        self.app = app
        self._settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = (self._settings or get_settings()).max_request_body_bytes
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await too_large(limit)(scope, receive, send)
            return

        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await too_large(limit)(scope, receive, send)


async def _body_too_large(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, BodyTooLarge)
    return too_large(exc.limit)


def install_body_limit(app: FastAPI, settings: Settings | None) -> None:
    """Call before ObservabilityMiddleware is added, so this one runs inside it."""
    app.add_exception_handler(BodyTooLarge, _body_too_large)
    app.add_middleware(BodyLimitMiddleware, settings=settings)
