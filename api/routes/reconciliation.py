"""Reconciliation routes: the last report of a pool, and an admin "reconcile now" that runs the
ReconcileWorkflow and returns its result. Amounts as decimal strings, like every amount here."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body
from pydantic import BaseModel, ConfigDict, Field

from api.deps import AdminDep, ServicesDep, TemporalDep, known_pool
from api.errors import ApiError
from api.schemas import ErrorOut, amounts_as_decimal
from reconcile.reconciler import PoolReport
from workflows.reconcile_client import reconcile_now

pools_router = APIRouter(prefix="/v1/pools", tags=["pools"])
admin_router = APIRouter(prefix="/v1/admin", tags=["admin"])

RUN_TIMEOUT_S = 120.0


class ChainFiguresOut(BaseModel):
    ledger: int
    total: str
    locked: str
    available: str


class ChainFundingOut(BaseModel):
    tx_hash: str
    ledger: int
    amount: str
    loan_id: str | None = Field(description="the saga loan it belongs to; null: external")


class ExplanationOut(BaseModel):
    from_ledger: int
    to_ledger: int
    events_complete: bool
    locked_delta: str
    total_delta: str
    funded_ours: str
    funded_external: str
    repaid: str
    interest: str
    deposited: str
    withdrawn: str
    ours: list[ChainFundingOut]
    external: list[ChainFundingOut]
    unexplained_locked: str
    unexplained_total: str


class ReconciliationOut(BaseModel):
    pool_id: str
    run_id: str
    at_ms: int
    chain: ChainFiguresOut
    previous_ledger: int | None
    established: bool
    restored: list[str]
    swept: list[str]
    orphans_released: list[str]
    orphans_committed: list[str]
    committed: list[str]
    undetermined: list[str]
    counts: dict[str, int]
    explanation: ExplanationOut | None
    reserved: str
    active_reservations: int
    overcommit: str
    frozen: bool
    froze: bool
    frozen_reason: str | None

    @classmethod
    def of(cls, report: PoolReport) -> ReconciliationOut:
        return cls.model_validate(amounts_as_decimal(report.model_dump(mode="json")))


class ReconcileIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pool_ids: list[Annotated[str, Field(min_length=1, max_length=128)]] | None = Field(
        default=None, max_length=100, description="default: every configured pool"
    )


class ReconcileRunOut(BaseModel):
    started_at: datetime
    reports: list[ReconciliationOut]
    failures: dict[str, str]


@pools_router.get(
    "/{pool_id}/reconciliation",
    response_model=ReconciliationOut,
    responses={s: {"model": ErrorOut} for s in (401, 403, 404, 422)},
)
async def reconciliation(_: AdminDep, pool_id: str, svc: ServicesDep) -> ReconciliationOut:
    known_pool(svc, pool_id)
    report = await svc.reports.latest(pool_id)
    if report is None:
        raise ApiError(
            404,
            "reconciliation_not_found",
            "this pool has not been reconciled yet",
            {"pool_id": pool_id},
        )
    return ReconciliationOut.of(report)


@admin_router.post(
    "/reconcile",
    response_model=ReconcileRunOut,
    responses={s: {"model": ErrorOut} for s in (401, 403, 422, 503, 504)},
)
async def reconcile(
    _: AdminDep,
    svc: ServicesDep,
    temporal: TemporalDep,
    body: Annotated[ReconcileIn | None, Body()] = None,
) -> ReconcileRunOut:
    """Runs a reconciliation now (the same workflow the Schedule starts) and returns its result."""
    try:
        run = await asyncio.wait_for(
            reconcile_now(temporal, svc.settings, pool_ids=body.pool_ids if body else None),
            timeout=RUN_TIMEOUT_S,
        )
    except TimeoutError as exc:
        raise ApiError(
            504,
            "reconcile_timeout",
            "the reconciliation did not finish in time; it keeps running",
            {"timeout_s": RUN_TIMEOUT_S},
        ) from exc
    return ReconcileRunOut(
        started_at=run.started_at,
        reports=[ReconciliationOut.of(r) for r in run.reports],
        failures=run.failures,
    )
