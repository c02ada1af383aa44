"""Operator routes (the `operator` scope: an operator API key or ADMIN_TOKEN): freeze a pool
(it refuses new reservations; commits and releases still go through) and unfreeze it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import AdminDep, ServicesDep, known_pool
from api.schemas import ErrorOut, FreezeOut, FreezeRequest, PoolLiquidity

router = APIRouter(prefix="/v1/admin", tags=["admin"])

ERRORS: dict[int | str, dict[str, Any]] = {s: {"model": ErrorOut} for s in (401, 403, 404, 422)}


@router.post("/pools/{pool_id}/freeze", response_model=FreezeOut, responses=ERRORS)
async def freeze(_: AdminDep, pool_id: str, body: FreezeRequest, svc: ServicesDep) -> FreezeOut:
    known_pool(svc, pool_id)
    await svc.ledger.freeze(pool_id, reason=body.reason)
    status = await svc.ledger.status(pool_id)
    return FreezeOut(pool_id=pool_id, frozen=status.frozen, liquidity=PoolLiquidity.of(status))


@router.post("/pools/{pool_id}/unfreeze", response_model=FreezeOut, responses=ERRORS)
async def unfreeze(_: AdminDep, pool_id: str, body: FreezeRequest, svc: ServicesDep) -> FreezeOut:
    known_pool(svc, pool_id)
    await svc.ledger.unfreeze(pool_id, reason=body.reason)
    status = await svc.ledger.status(pool_id)
    return FreezeOut(pool_id=pool_id, frozen=status.frozen, liquidity=PoolLiquidity.of(status))
