"""What the API exports for operators: per request a metric and a JSON log line carrying a
request id (`ObservabilityMiddleware`), and at scrape time every pool's figures as the ledger
holds them plus the last reconciliation report's drift (`PoolCollector`).

The pool gauges are read when Prometheus scrapes, not kept up to date by writers: the ledger
is the truth, so a gauge can never disagree with `GET /v1/pools/{id}/liquidity`, and several API
processes export the same values."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.telemetry.families import HTTP_DURATION, HTTP_REQUESTS
from core.telemetry.logs import log_context
from liquidity.ledger import Ledger
from liquidity.types import PoolStatus
from reconcile.reconciler import PoolReport, ReportStore

log = logging.getLogger("api.access")

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
QUIET_ROUTES = frozenset({"/healthz", "/readyz"})  # probes: debug level, not an info line each
SCRAPE_TIMEOUT_S = 5.0
FIGURES = ("total", "locked", "reserved", "available", "pending")


class ObservabilityMiddleware:
    """Pure ASGI (no per-request task or body buffering). Labels use the route *template*
    (`/v1/loans/{loan_id}`), never the raw path, so the series stay few; an unmatched path is
    `unmatched`. A client's `X-Request-ID` is kept when it is sane, else one is made; either way
    it is echoed back and is on every log line of the request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id(scope)
        status = 500  # what the client gets if the app raises before answering

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
                message = {**message, "headers": headers}
            await send(message)

        with log_context(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                elapsed = time.perf_counter() - started
                route = getattr(scope.get("route"), "path", None) or "unmatched"
                method = str(scope.get("method", ""))
                HTTP_REQUESTS.labels(route, method, str(status)).inc()
                HTTP_DURATION.labels(route, method).observe(elapsed)
                log.log(
                    logging.DEBUG if route in QUIET_ROUTES else logging.INFO,
                    "%s %s %d",
                    method,
                    scope.get("path", ""),
                    status,
                    extra={
                        "method": method,
                        "route": route,
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 2),
                    },
                )


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            if REQUEST_ID.match(text):
                return text
    return uuid.uuid4().hex


class PoolCollector(Collector):
    """Reads every configured pool's status and last report on the API's event loop (the
    ledger client is asyncio; prometheus-client scrapes from its own thread)."""

    def __init__(
        self,
        *,
        ledger: Ledger,
        reports: ReportStore,
        settings: Any,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._ledger = ledger
        self._reports = reports
        self._settings = settings
        self._loop = loop

    def describe(self) -> list[Metric]:
        return []  # pools come and go; nothing to check at registration

    async def _read(self) -> list[tuple[PoolStatus, PoolReport | None]]:
        pools = sorted(self._settings.pools)
        statuses = await asyncio.gather(*(self._ledger.status(p) for p in pools))
        reports = await asyncio.gather(*(self._reports.latest(p) for p in pools))
        return list(zip(statuses, reports, strict=True))

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("ledger_up", "1 when the API could read the reservation ledger")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            return  # called on the loop itself (never by the scrape thread): cannot block it
        try:
            rows = asyncio.run_coroutine_threadsafe(self._read(), self._loop).result(
                timeout=SCRAPE_TIMEOUT_S
            )
        except Exception as exc:
            log.warning("pool metrics: the ledger could not be read: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from pool_families(rows)


def pool_families(rows: list[tuple[PoolStatus, PoolReport | None]]) -> Iterator[Metric]:
    liquidity = GaugeMetricFamily(
        "pool_liquidity_stroops",
        "Pool figures as the reservation ledger holds them",
        labels=["pool", "figure"],
    )
    active = GaugeMetricFamily(
        "pool_active_reservations", "Active reservations of the pool", labels=["pool"]
    )
    frozen = GaugeMetricFamily(
        "pool_frozen", "1 while the pool refuses new reservations", labels=["pool"]
    )
    known = GaugeMetricFamily(
        "pool_known",
        "0 while the ledger lost the pool (fails closed until reconciled)",
        labels=["pool"],
    )
    drift = GaugeMetricFamily(
        "reconcile_drift_stroops",
        "Change in the chain's figures the last reconciliation could not explain, by class",
        labels=["pool", "class"],
    )
    last = GaugeMetricFamily(
        "reconcile_last_success_timestamp_seconds",
        "When the pool was last reconciled (Unix seconds)",
        labels=["pool"],
    )
    for status, report in rows:
        pool = status.pool_id
        values = (
            status.total,
            status.locked,
            status.reserved,
            status.available,
            status.pending_commits,
        )
        for figure, value in zip(FIGURES, values, strict=True):
            liquidity.add_metric([pool, figure], value)
        active.add_metric([pool], status.active_reservations)
        frozen.add_metric([pool], int(status.frozen))
        known.add_metric([pool], int(status.known))
        if report is not None:
            exp = report.explanation
            drift.add_metric([pool, "locked"], exp.unexplained_locked if exp else 0)
            drift.add_metric([pool, "total"], exp.unexplained_total if exp else 0)
            last.add_metric([pool], report.at_ms / 1000)
    yield from (liquidity, active, frozen, known, drift, last)
