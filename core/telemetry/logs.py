"""Structured logs: one JSON object per line from every process, so an operator (or a log
pipeline) can find every line of one loan by its `loan_id` across the API, the worker and the
watcher.

The ids a line is about come from three places, merged by `ContextFilter`:
- the log context of the current task (`bind` / `log_context`): the API binds `request_id` per
  request and the loan's ids once it knows them; the worker binds an activity's ids;
- the `extra=` of the call itself;
- the Temporal SDK's own extras (`temporal_workflow` / `temporal_activity` dicts that
  `workflow.logger` and `activity.logger` attach), lifted to top-level `workflow_id` / `loan_id`.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from collections.abc import Iterator
from contextvars import ContextVar
from types import TracebackType
from typing import Any

from pythonjsonlogger.json import JsonFormatter

# The ids operators search by; `bind` accepts only these so a typo cannot invent a field.
CONTEXT_FIELDS = ("request_id", "loan_id", "pool_id", "tx_hash", "workflow_id")
LOAN_WORKFLOW_PREFIX = "loan-"

# A mutable dict per request / activity: a route may add the loan's ids after the middleware
# set the request id, and both the route's and the middleware's lines see them.
_context: ContextVar[dict[str, str] | None] = ContextVar("log_context", default=None)


def bind(**fields: str | None) -> None:
    """Add ids to the current log context (a fresh one if none is open)."""
    current = _context.get()
    if current is None:
        current = {}
        _context.set(current)
    for name, value in fields.items():
        if name not in CONTEXT_FIELDS:
            raise ValueError(f"not a log context field: {name}")
        if value:
            current[name] = str(value)


@contextlib.contextmanager
def log_context(**fields: str | None) -> Iterator[dict[str, str]]:
    """A new context (inheriting the enclosing one's ids) for the duration of the block."""
    token = _context.set(dict(_context.get() or {}))
    try:
        bind(**fields)
        yield _context.get() or {}
    finally:
        _context.reset(token)


def current_context() -> dict[str, str]:
    return dict(_context.get() or {})


def loan_id_of(workflow_id: str | None) -> str | None:
    if workflow_id and workflow_id.startswith(LOAN_WORKFLOW_PREFIX):
        return workflow_id[len(LOAN_WORKFLOW_PREFIX) :]
    return None


class ContextFilter(logging.Filter):
    """Puts the context's ids on every record (a call's own `extra=` wins)."""

    def __init__(self, process: str) -> None:
        super().__init__()
        self._process = process

    def filter(self, record: logging.LogRecord) -> bool:
        fields = current_context()
        for extra in ("temporal_workflow", "temporal_activity"):
            info = getattr(record, extra, None)
            if isinstance(info, dict) and info.get("workflow_id"):
                fields.setdefault("workflow_id", str(info["workflow_id"]))
        loan = loan_id_of(fields.get("workflow_id"))
        if loan:
            fields.setdefault("loan_id", loan)
        for name, value in fields.items():
            if not getattr(record, name, None):
                setattr(record, name, value)
        record.process_name = self._process
        return True


def json_formatter() -> logging.Formatter:
    return JsonFormatter(
        "%(levelname)s %(name)s %(message)s",
        rename_fields={"levelname": "level", "name": "logger", "process_name": "process"},
        timestamp="time",
        json_default=str,
        json_ensure_ascii=False,
    )


def configure_logging(level: str, process: str) -> None:
    """Route every logger of this process (ours, uvicorn's, the SDK's) through one JSON handler
    on stdout; uncaught exceptions and warnings become JSON lines too."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(json_formatter())
    handler.addFilter(ContextFilter(process))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "aiohttp.access"):
        named = logging.getLogger(name)
        named.handlers.clear()
        named.propagate = True
    logging.captureWarnings(True)

    def excepthook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        logging.getLogger(process).critical("uncaught exception", exc_info=(kind, exc, tb))

    def thread_excepthook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit or args.exc_value is None:
            return
        logging.getLogger(process).critical(
            "uncaught exception in thread %s",
            getattr(args.thread, "name", "?"),
            exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
        )

    sys.excepthook = excepthook
    threading.excepthook = thread_excepthook


def extra(**fields: Any) -> dict[str, Any]:
    """`extra=` for a log call, dropping empty values (a field is present or absent, never
    null)."""
    return {k: v for k, v in fields.items() if v is not None and v != ""}
