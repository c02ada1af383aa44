"""Liveness (/healthz: the process answers) and readiness (/readyz: Temporal, Redis and the
chain RPC all answer within a short timeout, and a worker polls the task queue), for load
balancers and `make run`.

The worker check asks Temporal (DescribeTaskQueue) which pollers it has seen on the workflow
task queue and when each last polled. A worker re-polls as soon as a task arrives or its long
poll ends (the server holds one up to about 60 s), so a healthy idle worker's last poll can be
almost a minute old: `worker_poll_staleness_seconds` (default 75 s) bounds it, and a worker
that was paused or killed is reported missing at most that long after its last poll began."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

from api.deps import Services, ServicesDep
from api.schemas import Health

router = APIRouter(tags=["health"])
CHECK_TIMEOUT_S = 3.0


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    return Health(status="ok")


class NoWorker(Exception):
    """No worker has polled the task queue recently."""


async def _check(probe: Awaitable[Any]) -> str:
    try:
        await asyncio.wait_for(probe, timeout=CHECK_TIMEOUT_S)
    except NoWorker as exc:
        return f"down: {exc}"
    except Exception as exc:
        return f"down: {type(exc).__name__}"
    return "ok"


async def _temporal(svc: Services) -> None:
    client = await svc.temporal()
    await client.service_client.check_health()


async def _worker(svc: Services) -> None:
    client = await svc.temporal()
    queue = svc.settings.task_queue
    described = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        ),
        timeout=timedelta(seconds=CHECK_TIMEOUT_S),
    )
    bound = svc.settings.worker_poll_staleness_seconds
    now = time.time()
    if not any(now - p.last_access_time.ToSeconds() <= bound for p in described.pollers):
        raise NoWorker(f"no worker polled task queue {queue!r} in the last {bound:g} s")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
async def readyz(svc: ServicesDep) -> JSONResponse:
    names = ("temporal", "worker", "redis", "chain")
    results = await asyncio.gather(
        _check(_temporal(svc)),
        _check(_worker(svc)),
        _check(svc.redis.ping()),
        _check(svc.chain.latest_ledger()),
    )
    checks = dict(zip(names, results, strict=True))
    ok = all(v == "ok" for v in checks.values())
    body = Health(status="ok" if ok else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)
