"""Temporal worker: hosts the saga's workflows and activities in one process (`python worker.py`).

Settings come from the environment (core.settings), so the worker, the API and the watcher
always agree on Redis prefix, task queue and RPC endpoint. SIGTERM / SIGINT stop polling and let
running activities finish (graceful_shutdown_timeout) before the process exits; anything cut
short is retried by Temporal on another (or the restarted) worker.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import redis.asyncio as aioredis
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker

from activities.loan import LoanActivities
from activities.reconcile import ReconcileActivities
from activities.telemetry import LogContextInterceptor
from chain.client import ChainClient
from core.heap import freeze_startup_heap
from core.settings import Settings, get_settings
from core.telemetry.exporter import start_process_telemetry
from core.telemetry.logs import configure_logging
from liquidity.connection import connect_redis
from liquidity.ledger import Ledger
from liquidity.reconcile import ReportStore
from liquidity.tx_index import TxIndex
from workflows.loan import LoanWorkflow
from workflows.loan_client import connect
from workflows.reconcile import ReconcileWorkflow
from workflows.reconcile_client import ensure_reconcile_schedule

log = logging.getLogger("worker")


@dataclass
class Deps:
    """Process-wide clients shared by every activity (one Redis pool, one RPC session)."""

    settings: Settings
    redis: aioredis.Redis
    ledger: Ledger
    chain: ChainClient
    tx_index: TxIndex


@asynccontextmanager
async def open_deps(settings: Settings) -> AsyncIterator[Deps]:
    redis = connect_redis(settings.redis_url)
    chain = ChainClient(settings.rpc_url, settings.network_passphrase, base_fee=settings.base_fee)
    try:
        yield Deps(
            settings=settings,
            redis=redis,
            ledger=Ledger(
                redis, prefix=settings.ledger_prefix, safety_buffer=settings.safety_buffer_stroops
            ),
            chain=chain,
            tx_index=TxIndex(redis, prefix=settings.ledger_prefix),
        )
    finally:
        await chain.close()
        await redis.aclose()


def registrations(deps: Deps) -> tuple[list[type], list[Callable[..., Any]]]:
    """Every workflow class and activity callable this worker hosts."""
    workflows: list[type] = [LoanWorkflow]
    loan_activities = LoanActivities(
        settings=deps.settings, ledger=deps.ledger, chain=deps.chain, tx_index=deps.tx_index
    )
    activities: list[Callable[..., Any]] = list(loan_activities.all())  # type: ignore[arg-type]

    workflows.append(ReconcileWorkflow)
    reconcile_activities = ReconcileActivities(
        settings=deps.settings, ledger=deps.ledger, chain=deps.chain, tx_index=deps.tx_index,
        reports=ReportStore(deps.redis, prefix=deps.settings.ledger_prefix),
    )
    activities += reconcile_activities.all()  # type: ignore[arg-type]
    return workflows, activities


async def ensure_schedules(client: Client, deps: Deps) -> None:
    """Schedules this worker makes sure exist at start-up."""
    if deps.settings.reconcile_schedule_enabled:
        sid = await ensure_reconcile_schedule(client, deps.settings)
        log.info("reconcile schedule %s every %ss", sid, deps.settings.reconcile_interval_seconds)


def build_worker(
    client: Client,
    deps: Deps,
    *,
    task_queue: str | None = None,
    max_cached_workflows: int | None = None,
    extra_workflows: Sequence[type] = (),
    extra_activities: Sequence[Callable[..., Any]] = (),
) -> Worker:
    # The sandbox re-imports every workflow module for each new workflow run. Without a bytecode
    # cache (PYTHONDONTWRITEBYTECODE=1 set and the __pycache__ entry missing or stale, e.g. after
    # an edit) each of those re-imports compiles the module from source: ~25% more CPU per loan.
    # Writing the cache is harmless for a worker process, so turn it back on before the Worker's
    # sandbox imports anything (the first sandbox import then writes it).
    sys.dont_write_bytecode = False
    workflows, activities = registrations(deps)
    options: dict[str, Any] = {}
    if max_cached_workflows is not None:
        options["max_cached_workflows"] = max_cached_workflows
    return Worker(
        client,
        task_queue=task_queue or deps.settings.task_queue,
        workflows=[*workflows, *extra_workflows],
        activities=[*activities, *extra_activities],
        graceful_shutdown_timeout=timedelta(seconds=10),
        interceptors=[LogContextInterceptor()],
        **options,
    )


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """Run until `stop` is set, then shut down gracefully."""
    client = await connect(settings)
    async with open_deps(settings) as deps:
        await ensure_schedules(client, deps)
        worker = build_worker(client, deps)
        async with worker:
            freeze_startup_heap()
            log.info("worker polling task queue %s", settings.task_queue)
            await stop.wait()
            log.info("shutting down")


async def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_level, "worker")
    # The JSON lines carry the SDK's workflow/activity info as fields; not in the message too.
    workflow.logger.workflow_info_on_message = False
    activity.logger.activity_info_on_message = False
    start_process_telemetry(
        "worker", host=settings.metrics_host, port=settings.worker_metrics_port
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve(settings, stop)


if __name__ == "__main__":
    asyncio.run(main())
