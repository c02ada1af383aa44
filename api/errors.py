"""The API's one error shape, `{"error": {"code", "message", "details"}}`, and the handlers that
force every failure (ours, FastAPI's validation, Starlette's routing, the unexpected) into it.

Clients branch on `code`, never on the message, and never see a stack trace."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.telemetry.logs import current_context

log = logging.getLogger("api")

# Codes for the generic HTTP errors raised by routing (no route, wrong method, ...).
_STATUS_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


class ApiError(Exception):
    """Raised by routes and dependencies; rendered in the one error shape with `status`."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}
        self.headers = headers or {}


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def error_response(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(error_body(code, message, details), status_code=status, headers=headers)


def _plain(value: Any) -> Any:
    """Validation errors may carry arbitrary inputs (bytes, huge ints, exceptions): keep only
    what JSON can carry, truncated, so echoing a bad input can never itself fail."""
    if value is None or isinstance(value, bool | float):
        return value
    if isinstance(value, int):
        return value if abs(value) < 2**63 else str(value)[:64]
    if isinstance(value, str):
        return value[:200]
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value[:20]]
    if isinstance(value, dict):
        return {str(k)[:100]: _plain(v) for k, v in list(value.items())[:20]}
    return str(value)[:200]


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for err in exc.errors()[:50]:
        item: dict[str, Any] = {
            "loc": [_plain(p) for p in err.get("loc", ())],
            "type": str(err.get("type", "")),
            "msg": str(err.get("msg", ""))[:300],
        }
        out.append(item)
    return out


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers or None)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = _validation_details(exc)
    if any(e["type"] == "json_invalid" for e in errors):
        return error_response(
            400, "malformed_json", "the request body is not valid JSON", {"errors": errors}
        )
    return error_response(422, "validation_error", "the request is invalid", {"errors": errors})


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _STATUS_CODES.get(exc.status_code, f"http_{exc.status_code}")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    headers = dict(exc.headers) if exc.headers else None
    return error_response(exc.status_code, code, message, headers=headers)


def internal_error() -> JSONResponse:
    """The 500 names the request id that the error's log line carries, so an operator finds
    the trace from what the client reports."""
    request_id = current_context().get("request_id")
    return error_response(
        500,
        "internal_error",
        "internal error; see the API log",
        {"request_id": request_id} if request_id else None,
    )


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    """Last resort for errors raised outside UnexpectedErrorMiddleware (Starlette then re-raises
    and the server closes the connection)."""
    log.exception("unhandled error", exc_info=exc)
    return internal_error()


class UnexpectedErrorMiddleware:
    """Answers an unexpected exception with the 500 in the error shape and does *not* re-raise
    it: Starlette's outermost handler sends its 500 and then re-raises, and the server closes the
    client's keep-alive connection. Runs inside ObservabilityMiddleware, so the log line and the
    response carry the request id. After the response started nothing can be said: re-raised."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            if started:
                raise
            log.exception("unhandled error", exc_info=exc)
            await internal_error()(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
