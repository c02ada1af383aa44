"""Liveness (/healthz: the process answers) and readiness (/readyz: Temporal, Redis and the
chain RPC all answer within a short timeout), for load balancers and `make run`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import Services, ServicesDep
from api.schemas import Health

router = APIRouter(tags=["health"])
CHECK_TIMEOUT_S = 3.0


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    return Health(status="ok")


async def _check(probe: Awaitable[Any]) -> str:
    try:
        await asyncio.wait_for(probe, timeout=CHECK_TIMEOUT_S)
    except Exception as exc:
        return f"down: {type(exc).__name__}"
    return "ok"


async def _temporal(svc: Services) -> None:
    client = await svc.temporal()
    await client.service_client.check_health()


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
async def readyz(svc: ServicesDep) -> JSONResponse:
    names = ("temporal", "redis", "chain")
    results = await asyncio.gather(
        _check(_temporal(svc)),
        _check(svc.redis.ping()),
        _check(svc.chain.latest_ledger()),
    )
    checks = dict(zip(names, results, strict=True))
    ok = all(v == "ok" for v in checks.values())
    body = Health(status="ok" if ok else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)
