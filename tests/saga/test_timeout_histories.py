"""Activity timeouts in every step of the saga, produced by real faults, run on an uncached
worker (max_cached_workflows=0: every workflow task replays the whole history) and replayed; the
histories are the replay suite's (tests/histories/loan_timeout_*.json, issue 13).

- an open step times out (LoanInput.timeouts: 1 s an attempt, 3 s in all): `reserve` with this
  test's own Redis SIGSTOPped, `build` with this test's own devnet SIGSTOPped, `assess` with an
  assess activity that never answers (the step is pure policy: no dependency to pause). The
  local activity's timeout reaches the workflow as ActivityError live and as TimeoutError on
  replay; either way the open fails, whatever was reserved is released, the loan is `failed`.
- commit and release are obligations, retried until they succeed: their timeouts never reach
  the workflow as a failure, they show in the history as a later attempt whose last failure is
  the start-to-close timeout. Produced for real: Redis SIGSTOPped while the activity runs (2 s
  an attempt), SIGCONT once the first attempt timed out.

Re-record with RECORD_HISTORIES=1 (see tests/saga/test_replay.py)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer, Worker

from activities.loan import Assessment, AssessRequest
from core.models import Cancel, LoanState, SagaTimeouts, Settled, Submitted
from core.money import UNIT
from devnet.kit import DevnetProcess, deploy_pool, new_funded_keypair, wait_for_tx
from runtime.worker import registrations
from tests.fixtures.devnet import running_devnet
from tests.fixtures.temporal import SagaStack, running_saga_stack
from tests.saga.helpers import open_test_loan, signed, terms_for, wait_view
from tools.procs import free_port
from tools.redis_servers import Server, start_server
from workflows.loan import LoanWorkflow
from workflows.loan_client import (
    LoanOpenFailed,
    loan_handle,
    signal_cancel,
    signal_settled,
    signal_submitted,
)

HISTORIES = Path(__file__).resolve().parents[1] / "histories"
SHORT = SagaTimeouts(open_step_seconds=1, open_budget_seconds=3, obligation_attempt_seconds=2)


@dataclass
class Faulty:
    stack: SagaStack
    redis: Server
    devnet: DevnetProcess
    pool: Any
    vendor: str


@pytest.fixture(scope="module")
def own_devnet() -> Iterator[DevnetProcess]:
    with running_devnet(ledger_interval=0.5) as proc:
        yield proc


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(tmp_path_factory.mktemp("redis-timeouts"), free_port())
    yield server
    os.kill(server.pid, signal.SIGCONT)  # never leave it stopped
    server.stop()


@pytest.fixture(scope="module")
async def faulty(
    temporal_env: Any, own_devnet: DevnetProcess, own_redis: Server
) -> AsyncIterator[Faulty]:
    async with running_saga_stack(
        temporal_env, own_devnet, redis_url=f"redis://127.0.0.1:{own_redis.port}/0"
    ) as stack:
        pool = await deploy_pool(own_devnet.rpc_url, own_devnet.passphrase, liquidity=100 * UNIT)
        await stack.add_pool(pool)
        vendor = await new_funded_keypair(own_devnet.rpc_url)
        yield Faulty(stack, own_redis, own_devnet, pool, vendor.public_key)


@activity.defn(name="loan.assess")
async def assess_that_never_answers(request: AssessRequest) -> Assessment:
    await asyncio.sleep(3600)
    raise AssertionError("unreachable")


def uncached_worker(stack: SagaStack, task_queue: str, *, hung_assess: bool = False) -> Worker:
    workflows, activities = registrations(stack.clients)
    if hung_assess:
        activities = [
            assess_that_never_answers if getattr(a, "__name__", "") == "assess" else a
            for a in activities
        ]
    return Worker(
        stack.client,
        task_queue=task_queue,
        workflows=workflows,
        activities=activities,
        max_cached_workflows=0,
    )


class paused:
    """SIGSTOP a process we started, SIGCONT on leaving (also on failure)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def __enter__(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def __exit__(self, *_: object) -> None:
        os.kill(self.pid, signal.SIGCONT)


async def replay_and_record(stack: SagaStack, loan_id: str, name: str) -> WorkflowHistory:
    handle = loan_handle(stack.client, loan_id)
    for _ in range(100):  # the closing task may lag the state the query saw
        if (await handle.describe()).close_time is not None:
            break
        await asyncio.sleep(0.1)
    history = await handle.fetch_history()
    await Replayer(
        workflows=[LoanWorkflow], data_converter=pydantic_data_converter
    ).replay_workflow(history)
    if os.environ.get("RECORD_HISTORIES") == "1":
        (HISTORIES / f"loan_timeout_{name}.json").write_text(history.to_json())
    return history


def timed_out_attempts(history: WorkflowHistory, activity_type: str) -> list[Any]:
    """Started events of `activity_type` whose previous attempt ended in a timeout."""
    scheduled: set[int] = set()
    found = []
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            if event.activity_task_scheduled_event_attributes.activity_type.name == activity_type:
                scheduled.add(event.event_id)
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started = event.activity_task_started_event_attributes
            if started.scheduled_event_id in scheduled and started.attempt > 1:
                if started.last_failure.HasField("timeout_failure_info"):
                    found.append(started)
    return found


async def wait_pending_attempt(
    stack: SagaStack, loan_id: str, at_least: int, within: float = 30
) -> None:
    """Until the loan's pending activity is on attempt `at_least` (an earlier one timed out)."""
    handle = loan_handle(stack.client, loan_id)
    deadline = time.monotonic() + within
    while True:
        pending = (await handle.describe()).raw_description.pending_activities
        if pending and pending[0].attempt >= at_least:
            return
        assert time.monotonic() < deadline, pending
        await asyncio.sleep(0.2)


async def assert_nothing_reserved(f: Faulty) -> None:
    deadline = time.monotonic() + 15
    while True:
        status = await f.stack.ledger.status(f.pool.pool_id)
        if (status.reserved, status.active_reservations) == (0, 0) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert (status.reserved, status.active_reservations) == (0, 0), status


@pytest.mark.parametrize("step", ["assess", "reserve", "build"])
async def test_an_open_step_that_times_out_fails_the_open_and_replays(
    faulty: Faulty, step: str
) -> None:
    f = faulty
    borrower = await new_funded_keypair(
        f.devnet.rpc_url, token_id=f.pool.token_id, token_amount=100 * UNIT
    )
    task_queue = f"timeouts-{uuid.uuid4().hex[:8]}"
    fault = {"reserve": f.redis.pid, "build": f.devnet.pid}.get(step)
    loan_id = uuid.uuid4().hex
    async with uncached_worker(f.stack, task_queue, hung_assess=step == "assess"):
        opening = open_test_loan(
            f.stack.client,
            task_queue,
            pool_id=f.pool.pool_id,
            creditline_id=f.pool.creditline_id,
            terms=terms_for(borrower.public_key, f.vendor, 5 * UNIT),
            timeouts=SHORT,
            loan_id=loan_id,
        )
        started = time.monotonic()
        with pytest.raises(LoanOpenFailed) as failed, paused(fault) if fault else nullcontext():
            await opening  # gives up within the budget; a release may then wait for Redis
        assert time.monotonic() - started < 15
        assert "timed out" in str(failed.value), failed.value
        view = await wait_view(f.stack.client, loan_id, within=30)
        assert view.state == LoanState.FAILED and view.failure_reason == "unavailable", view
    await assert_nothing_reserved(f)
    await replay_and_record(f.stack, loan_id, f"open_{step}")


async def test_a_commit_that_times_out_is_retried_and_the_loan_funds(faulty: Faulty) -> None:
    f = faulty
    borrower = await new_funded_keypair(
        f.devnet.rpc_url, token_id=f.pool.token_id, token_amount=100 * UNIT
    )
    task_queue = f"timeouts-{uuid.uuid4().hex[:8]}"
    async with uncached_worker(f.stack, task_queue):
        loan_id, offer = await open_test_loan(
            f.stack.client,
            task_queue,
            pool_id=f.pool.pool_id,
            creditline_id=f.pool.creditline_id,
            terms=terms_for(borrower.public_key, f.vendor, 5 * UNIT),
            timeouts=SHORT,
        )
        sent = await f.stack.chain.submit(signed(offer, borrower.secret, f.devnet.passphrase))
        await signal_submitted(f.stack.client, loan_id, Submitted(tx_hash=sent.tx_hash))
        landed = await wait_for_tx(f.stack.chain, sent.tx_hash, 15)
        assert landed.status == "success" and landed.ledger is not None, landed
        await wait_view(f.stack.client, loan_id, lambda v: v.state != LoanState.RESERVED)
        with paused(f.redis.pid):
            # the watcher is stalled on the same Redis: the settlement comes from here
            await signal_settled(
                f.stack.client, loan_id, Settled(tx_hash=sent.tx_hash, ledger=landed.ledger)
            )
            await wait_pending_attempt(f.stack, loan_id, at_least=2)
        view = await wait_view(f.stack.client, loan_id, within=30)
        assert view.state == LoanState.FUNDED, view
    history = await replay_and_record(f.stack, loan_id, "commit")
    assert timed_out_attempts(history, "loan.commit"), "no commit attempt after a timeout"
    await assert_nothing_reserved(f)


async def test_a_release_that_times_out_is_retried_and_the_loan_cancels(faulty: Faulty) -> None:
    f = faulty
    borrower = await new_funded_keypair(
        f.devnet.rpc_url, token_id=f.pool.token_id, token_amount=100 * UNIT
    )
    task_queue = f"timeouts-{uuid.uuid4().hex[:8]}"
    async with uncached_worker(f.stack, task_queue):
        loan_id, _ = await open_test_loan(
            f.stack.client,
            task_queue,
            pool_id=f.pool.pool_id,
            creditline_id=f.pool.creditline_id,
            terms=terms_for(borrower.public_key, f.vendor, 5 * UNIT),
            timeouts=SHORT,
        )
        with paused(f.redis.pid):
            await signal_cancel(f.stack.client, loan_id, Cancel(reason="timeout test"))
            await wait_pending_attempt(f.stack, loan_id, at_least=2)
        view = await wait_view(f.stack.client, loan_id, within=30)
        assert view.state == LoanState.CANCELLED, view
    history = await replay_and_record(f.stack, loan_id, "release")
    assert timed_out_attempts(history, "loan.release"), "no release attempt after a timeout"
    await assert_nothing_reserved(f)
