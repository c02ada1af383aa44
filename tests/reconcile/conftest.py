"""An isolated reconciler world per test: its own Redis prefix, task queue and freshly deployed
pool, an in-process worker (LoanWorkflow + ReconcileWorkflow and their activities, exactly what
worker.py registers) and NO settlement watcher, so a settlement is only noticed if the reconciler
notices it. Shares the session's Temporal server, devnet and Redis."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from core.models import LoanState, OpenResult
from core.money import UNIT
from liquidity.ledger import Ledger
from liquidity.tx_index import TxIndex
from reconcile.reconciler import PoolReport, ReportStore
from runtime.clients import Clients
from runtime.worker import build_worker
from tests.api.conftest import admin_headers, anon, api_server, http, shared_pool  # noqa: F401
from tests.fixtures.redis import delete_prefix
from tests.fixtures.temporal import register_pool, stack_settings
from tests.saga.helpers import open_test_loan, terms_for, wait_view
from tests.saga.procs import Proc
from workflows.reconcile import ReconcileRun
from workflows.reconcile_client import reconcile_now


@dataclass
class World:
    stack: Any  # the session SagaStack (client, chain, redis)
    settings: Any
    ledger: Ledger
    tx_index: TxIndex
    reports: ReportStore
    pool: Any
    procs: list[Proc] = field(default_factory=list)

    @property
    def pool_id(self) -> str:
        return str(self.pool.pool_id)

    async def reconcile(self) -> PoolReport:
        run: ReconcileRun = await reconcile_now(
            self.stack.client, self.settings, pool_ids=[self.pool_id]
        )
        assert not run.failures, run.failures
        (report,) = run.reports
        assert report.pool_id == self.pool_id
        # Nothing the run left behind outlives its hold (TTL + grace): the sweep ran.
        for r in await self.ledger.reservations(self.pool_id):
            assert r.hold_until_ms > report.at_ms - 1000, (r, report.at_ms)
        return report

    async def open(
        self,
        borrower: Any,
        vendor: Any,
        funded: int,
        *,
        ttl: int | None = None,
        task_queue: str | None = None,
    ) -> tuple[str, OpenResult]:
        return await open_test_loan(
            self.stack.client,
            task_queue or self.settings.task_queue,
            pool_id=self.pool_id,
            creditline_id=self.pool.creditline_id,
            terms=terms_for(borrower.public_key, vendor.public_key, funded),
            ttl_seconds=ttl,
        )

    def spawn(self, script: str, settings: Any) -> Proc:
        proc = Proc(script, settings)
        self.procs.append(proc)
        return proc

    async def wait_terminal(self, loan_id: str, state: LoanState, within: float = 30) -> Any:
        view = await wait_view(self.stack.client, loan_id, within=within)
        assert view.state == state, view
        return view


@pytest.fixture
async def world(saga_stack: Any, devnet: Any, deploy_pool: Any) -> AsyncIterator[World]:
    prefix = f"test-recon-{uuid.uuid4().hex[:10]}"
    settings = stack_settings(
        saga_stack.settings.temporal_address,
        devnet,
        prefix=prefix,
        task_queue=f"recon-{uuid.uuid4().hex[:8]}",
    )
    clients = Clients.build(settings, saga_stack.redis, saga_stack.chain)
    pool = await deploy_pool(liquidity=100 * UNIT)
    await register_pool(settings, clients.ledger, saga_stack.chain, pool)
    world = World(saga_stack, settings, clients.ledger, clients.tx_index, clients.reports, pool)
    try:
        async with build_worker(saga_stack.client, clients):
            yield world
    finally:
        for proc in world.procs:
            proc.stop()
        await delete_prefix(saga_stack.redis, prefix)


async def wait_until(predicate: Any, within: float = 15, step: float = 0.1) -> None:
    deadline = time.monotonic() + within
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(step)
