"""Determinism of ReconcileWorkflow: a recorded history (two pools reconciled concurrently, one
more configured pool that fails) must replay against the current code, and a fresh run on a
worker with max_cached_workflows=0 (full replay on every task) must complete and replay too.

Histories live in tests/histories/reconcile/ (a subfolder: the loan replay test replays every
*.json directly in tests/histories/ with LoanWorkflow only). Re-record after an intended change:
    RECORD_HISTORIES=1 .venv/bin/python -m pytest tests/reconcile/test_replay.py -q
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from core.money import UNIT
from runtime.clients import Clients
from runtime.worker import build_worker
from tests.reconcile.conftest import World
from workflows.reconcile import ReconcileWorkflow
from workflows.reconcile_client import reconcile_now

HISTORIES = Path(__file__).resolve().parents[1] / "histories" / "reconcile"
BROKEN_POOL = "CBROKENPOOLNOTACONTRACT"


def replayer() -> Replayer:
    return Replayer(workflows=[ReconcileWorkflow], data_converter=pydantic_data_converter)


async def test_recorded_reconcile_histories_replay():
    files = sorted(HISTORIES.glob("*.json"))
    assert files, f"no recorded histories in {HISTORIES}"
    for path in files:
        await replayer().replay_workflow(WorkflowHistory.from_json(path.stem, path.read_text()))


async def test_run_on_an_uncached_worker_and_replay(world: World, deploy_pool):
    w = world
    other = await deploy_pool(liquidity=50 * UNIT)
    w.settings.pools[other.pool_id] = other.creditline_id
    w.settings.pools[BROKEN_POOL] = "CNOCREDITLINE"
    settings = w.settings.model_copy(update={"task_queue": f"nocache-{uuid.uuid4().hex[:8]}"})
    clients = Clients.build(settings, w.stack.redis, w.stack.chain)
    async with build_worker(w.stack.client, clients, max_cached_workflows=0):
        run = await reconcile_now(w.stack.client, settings)

    assert sorted(r.pool_id for r in run.reports) == sorted([w.pool_id, other.pool_id])
    assert list(run.failures) == [BROKEN_POOL]
    # `other` was never established: the reconciler makes it known from the chain.
    by_pool = {r.pool_id: r for r in run.reports}
    assert by_pool[other.pool_id].established and by_pool[other.pool_id].chain.total == 50 * UNIT
    assert (await w.ledger.status(other.pool_id)).known

    history = await w.stack.client.get_workflow_handle(run.reports[0].run_id).fetch_history()
    await replayer().replay_workflow(history)
    if os.environ.get("RECORD_HISTORIES") == "1":
        HISTORIES.mkdir(parents=True, exist_ok=True)
        (HISTORIES / "reconcile_two_pools_one_broken.json").write_text(history.to_json())
    elif not any(HISTORIES.glob("*.json")):
        pytest.fail("no recorded reconcile histories: run with RECORD_HISTORIES=1 once")
