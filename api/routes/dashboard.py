"""The liquidity dashboard: `/dashboard` is one self-contained page (inline CSS, JS and SVG:
nothing is fetched from elsewhere, so it works offline and behind any firewall), and
`/v1/admin/dashboard` is the one read-only call it makes, behind the operator credential.

One call per refresh returns every pool's figures, reservations, latest refusals, audit tail,
last reconciliation and the last hour's history, all serialised by the same schemas as the
pool routes, so the page shows exactly what `GET /v1/pools/{id}/...` answers. A dependency that
is down is a 503 in the one error shape, which the page shows instead of going blank."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from pydantic import BaseModel
from redis.exceptions import RedisError

from api.auth.deps import OperatorDep
from api.deps import Services, ServicesDep
from api.errors import ApiError
from api.routes.reconciliation import ReconciliationOut
from api.schemas import AuditOut, BlockedOut, ErrorOut, PoolLiquidity, ReservationOut
from core.money import format_stroops
from runtime.clients import liquidity_history

page_router = APIRouter(tags=["dashboard"])
data_router = APIRouter(prefix="/v1/admin", tags=["admin"])

PAGE = Path(__file__).resolve().parent.parent / "dashboard.html"
READ_TIMEOUT_S = 5.0
BLOCKED_TAIL = 10
AUDIT_TAIL = 20
# The page may only talk to its own origin and loads nothing: offline by construction.
CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; img-src data:; form-action 'none'; frame-ancestors 'none'"
)


class HistoryOut(BaseModel):
    at_ms: int
    total: str
    locked: str
    reserved: str
    available: str


class PoolBoard(BaseModel):
    pool_id: str
    liquidity: PoolLiquidity
    reservations: list[ReservationOut]
    blocked: list[BlockedOut]
    audit: list[AuditOut]
    reconciliation: ReconciliationOut | None
    history: list[HistoryOut]


class DashboardOut(BaseModel):
    now_ms: int
    history_window_seconds: int
    pools: list[PoolBoard]


@page_router.get("/dashboard", response_class=HTMLResponse, include_in_schema=False)
async def dashboard_page() -> HTMLResponse:
    return HTMLResponse(
        PAGE.read_text(),
        headers={
            "Content-Security-Policy": CSP,
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )


async def _board(svc: Services, pool_id: str) -> PoolBoard:
    ledger = svc.ledger
    history = liquidity_history(svc.settings, svc.redis)
    status, reservations, blocked, audit, report, points = await asyncio.gather(
        ledger.status(pool_id),
        ledger.reservations(pool_id),
        ledger.blocked(pool_id, count=BLOCKED_TAIL),
        ledger.audit(pool_id, count=AUDIT_TAIL),
        svc.reports.latest(pool_id),
        history.points(pool_id),
    )
    return PoolBoard(
        pool_id=pool_id,
        liquidity=PoolLiquidity.of(status),
        reservations=[ReservationOut.of(r) for r in reservations],
        blocked=[BlockedOut.of(b) for b in blocked],
        audit=[AuditOut.of(a) for a in audit],
        reconciliation=ReconciliationOut.of(report) if report else None,
        history=[
            HistoryOut(
                at_ms=p.at_ms,
                total=format_stroops(p.total),
                locked=format_stroops(p.locked),
                reserved=format_stroops(p.reserved),
                available=format_stroops(p.available),
            )
            for p in points
        ],
    )


@data_router.get(
    "/dashboard",
    response_model=DashboardOut,
    responses={s: {"model": ErrorOut} for s in (401, 403, 503)},
)
async def dashboard_data(svc: ServicesDep, _: OperatorDep) -> Any:
    """Everything the dashboard shows, for every configured pool (operator credential)."""
    pools = sorted(svc.settings.pools)
    try:
        boards = await asyncio.wait_for(
            asyncio.gather(*(_board(svc, p) for p in pools)), timeout=READ_TIMEOUT_S
        )
    except (RedisError, OSError, TimeoutError) as exc:
        raise ApiError(
            503,
            "ledger_unavailable",
            "the reservation ledger (Redis) did not answer",
            {"reason": type(exc).__name__},
            {"Retry-After": "5"},
        ) from exc
    return DashboardOut(
        now_ms=int(time.time() * 1000),
        history_window_seconds=svc.settings.history_window_seconds,
        pools=list(boards),
    )
