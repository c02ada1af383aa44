"""The Temporal worker of the saga: every workflow and activity it hosts, on the process's
clients (runtime.clients), and the Schedules it makes sure exist. `python worker.py` runs it.

Stopping lets running activities finish (graceful_shutdown_timeout) before the process exits;
anything cut short is retried by Temporal on another (or the restarted) worker.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sys
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from activities.loan import LoanActivities
from activities.reconcile import ReconcileActivities
from activities.telemetry import LogContextInterceptor
from core.heap import freeze_startup_heap
from core.settings import Settings
from runtime.clients import Clients, open_clients, temporal_client
from workflows.loan import LoanWorkflow
from workflows.loan_directory import TemporalLoanDirectory
from workflows.loan_journal import LoanJournalWorkflow
from workflows.loan_journal_client import TemporalLoanJournal
from workflows.reconcile import ReconcileWorkflow
from workflows.reconcile_client import ensure_reconcile_schedule

log = logging.getLogger("worker")


def keep_bytecode_cache() -> None:
    """Let this process write __pycache__ even under PYTHONDONTWRITEBYTECODE=1.

    Temporal's sandbox re-imports every workflow module for each new workflow run; without a
    bytecode cache (the entry missing or stale, e.g. after an edit) each re-import compiles the
    module from source, which costs the worker a measurable share of its CPU per loan (see
    docs/benchmarks.md). A worker process may safely write the cache. Process-wide, so only a
    worker's main() calls it, before the sandbox imports anything."""
    sys.dont_write_bytecode = False


def registrations(clients: Clients) -> tuple[list[type], list[Callable[..., Any]]]:
    """Every workflow class and activity callable this worker hosts."""
    workflows: list[type] = [LoanWorkflow]
    settings = clients.settings
    journal: functools.partial[TemporalLoanJournal] | None = None
    if settings.loan_journal_shards > 0:
        workflows.append(LoanJournalWorkflow)
        journal = functools.partial(
            TemporalLoanJournal,
            task_queue=settings.task_queue,
            shards=settings.loan_journal_shards,
        )
    loan_activities = LoanActivities(
        settings=settings,
        ledger=clients.ledger,
        chain=clients.chain,
        tx_index=clients.tx_index,
        journal=journal,
    )
    activities: list[Callable[..., Any]] = list(loan_activities.all())  # type: ignore[arg-type]

    workflows.append(ReconcileWorkflow)
    reconcile_activities = ReconcileActivities(
        settings=clients.settings,
        ledger=clients.ledger,
        chain=clients.chain,
        tx_index=clients.tx_index,
        reports=clients.reports,
        directory=functools.partial(TemporalLoanDirectory, journal=journal),
    )
    activities += reconcile_activities.all()  # type: ignore[arg-type]
    return workflows, activities


async def ensure_schedules(client: Client, clients: Clients) -> None:
    """Schedules this worker makes sure exist at start-up."""
    if clients.settings.reconcile_schedule_enabled:
        sid = await ensure_reconcile_schedule(client, clients.settings)
        log.info(
            "reconcile schedule %s every %ss", sid, clients.settings.reconcile_interval_seconds
        )


def build_worker(
    client: Client,
    clients: Clients,
    *,
    task_queue: str | None = None,
    max_cached_workflows: int | None = None,
    extra_workflows: Sequence[type] = (),
    extra_activities: Sequence[Callable[..., Any]] = (),
) -> Worker:
    workflows, activities = registrations(clients)
    options: dict[str, Any] = {}
    if max_cached_workflows is not None:
        options["max_cached_workflows"] = max_cached_workflows
    return Worker(
        client,
        task_queue=task_queue or clients.settings.task_queue,
        workflows=[*workflows, *extra_workflows],
        activities=[*activities, *extra_activities],
        graceful_shutdown_timeout=timedelta(seconds=10),
        interceptors=[LogContextInterceptor()],
        **options,
    )


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """Run until `stop` is set, then shut down gracefully."""
    client = await temporal_client(settings)
    async with open_clients(settings) as clients:
        await ensure_schedules(client, clients)
        worker = build_worker(client, clients)
        async with worker:
            freeze_startup_heap()
            log.info("worker polling task queue %s", settings.task_queue)
            await stop.wait()
            log.info("shutting down")
