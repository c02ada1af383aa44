"""Pool routes: what the reservation ledger holds for a pool (liquidity, reservations, audit
and blocked streams). Read-only views over liquidity.ledger; amounts as decimal strings.

Liquidity is for any authenticated caller (or public, PUBLIC_LIQUIDITY); reservations and the
streams name loans and borrowers, so they are for operators only."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Query

from api.auth.deps import OperatorDep, PoolReaderDep
from api.deps import ServicesDep, known_pool
from api.errors import ApiError
from api.schemas import (
    AuditOut,
    AuditPage,
    BlockedOut,
    BlockedPage,
    ErrorOut,
    PoolLiquidity,
    ReservationList,
    ReservationOut,
)

Row = TypeVar("Row")

router = APIRouter(prefix="/v1/pools", tags=["pools"])

ERRORS: dict[int | str, dict[str, Any]] = {s: {"model": ErrorOut} for s in (401, 403, 404, 422)}
# A Redis stream id ("1700000000000-0" or just the milliseconds): the page ends before it.
STREAM_ID = r"^[0-9]{1,20}(-[0-9]{1,20})?$"

Count = Annotated[int, Query(ge=1, le=1000, description="entries per page, newest first")]
Before = Annotated[
    str | None,
    Query(pattern=STREAM_ID, max_length=41, description="return entries older than this id"),
]


async def _page(read: Awaitable[list[Row]]) -> list[Row]:
    """A stream page; a `before` the pattern lets through but Redis would refuse (beyond 64
    bits) is the caller's mistake, not a 500."""
    try:
        return await read
    except ValueError as exc:
        raise ApiError(422, "invalid_cursor", str(exc), {"param": "before"}) from exc


@router.get("/{pool_id}/liquidity", response_model=PoolLiquidity, responses=ERRORS)
async def liquidity(_: PoolReaderDep, pool_id: str, svc: ServicesDep) -> PoolLiquidity:
    known_pool(svc, pool_id)
    return PoolLiquidity.of(await svc.ledger.status(pool_id))


@router.get("/{pool_id}/reservations", response_model=ReservationList, responses=ERRORS)
async def reservations(_: OperatorDep, pool_id: str, svc: ServicesDep) -> ReservationList:
    known_pool(svc, pool_id)
    rows = await svc.ledger.reservations(pool_id)
    return ReservationList(pool_id=pool_id, reservations=[ReservationOut.of(r) for r in rows])


@router.get("/{pool_id}/audit", response_model=AuditPage, responses=ERRORS)
async def audit(
    _: OperatorDep, pool_id: str, svc: ServicesDep, count: Count = 100, before: Before = None
) -> AuditPage:
    known_pool(svc, pool_id)
    rows = await _page(svc.ledger.audit(pool_id, count=count, before=before))
    return AuditPage(
        pool_id=pool_id,
        entries=[AuditOut.of(e) for e in rows],
        next_before=rows[-1].id if len(rows) == count else None,
    )


@router.get("/{pool_id}/blocked", response_model=BlockedPage, responses=ERRORS)
async def blocked(
    _: OperatorDep, pool_id: str, svc: ServicesDep, count: Count = 100, before: Before = None
) -> BlockedPage:
    known_pool(svc, pool_id)
    rows = await _page(svc.ledger.blocked(pool_id, count=count, before=before))
    return BlockedPage(
        pool_id=pool_id,
        entries=[BlockedOut.of(e) for e in rows],
        next_before=rows[-1].id if len(rows) == count else None,
    )
