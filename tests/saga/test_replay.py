"""Determinism: recorded histories of the saga's main paths must replay against the current
LoanWorkflow code, so a non-deterministic change fails CI instead of wedging running loans.

The scenarios also run on a worker with max_cached_workflows=0, which replays the whole history
on every workflow task (what a worker restart or cache eviction does) and so catches eviction
bugs (e.g. compensation running on an eviction's CancelledError).

Re-record tests/histories/*.json after an intended, versioned change with:
    RECORD_HISTORIES=1 .venv/bin/python -m pytest tests/saga/test_replay.py -q
tests/histories/v1_loan_*.json were recorded before the static search attributes moved into the
start request (the first workflow task then upserted them); they stay so such runs keep replaying.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from core.models import Cancel, LoanOffer, LoanRefusal, LoanState, SettlementFailed, Submitted
from core.money import UNIT
from devnet.kit import wait_for_tx
from runtime.worker import build_worker
from tests.saga.helpers import open_test_loan, signed, terms_for, wait_view
from workflows.loan import LoanWorkflow
from workflows.loan_client import loan_handle, signal_cancel, signal_submitted

HISTORIES = Path(__file__).resolve().parents[1] / "histories"


def replayer() -> Replayer:
    return Replayer(workflows=[LoanWorkflow], data_converter=pydantic_data_converter)


async def test_recorded_histories_replay():
    files = sorted(HISTORIES.glob("*.json"))
    assert files, f"no recorded histories in {HISTORIES}"
    for path in files:
        history = WorkflowHistory.from_json(path.stem, path.read_text())
        await replayer().replay_workflow(history)


async def run_scenarios(client: Client, task_queue: str, stack, pool, new_borrower) -> dict:
    """Every main path once; returns {name: loan_id} once all loans are closed."""
    vendor = await new_borrower()
    borrowers = await asyncio.gather(*(new_borrower(pool) for _ in range(6)))
    passphrase = stack.settings.network_passphrase

    async def open_(b, funded, ttl=None):
        return await open_test_loan(
            client,
            task_queue,
            pool_id=pool.pool_id,
            creditline_id=pool.creditline_id,
            terms=terms_for(b.public_key, vendor.public_key, funded),
            ttl_seconds=ttl,
        )

    loans: dict[str, str] = {}
    loans["funded"], offer = await open_(borrowers[0], 10 * UNIT)
    assert isinstance(offer, LoanOffer)
    sent = await stack.chain.submit(signed(offer, borrowers[0].secret, passphrase))
    await signal_submitted(client, loans["funded"], Submitted(tx_hash=sent.tx_hash))
    assert (await wait_for_tx(stack.chain, sent.tx_hash, 15)).status == "success"

    loans["refused"], refusal = await open_(borrowers[1], 1_000 * UNIT)
    assert isinstance(refusal, LoanRefusal)

    loans["cancelled"], offer = await open_(borrowers[2], 5 * UNIT)
    await signal_cancel(client, loans["cancelled"], Cancel(reason="no longer needed"))

    # 2 s: under heavy load an open task retried past a 1 s hold would find the loan expired.
    loans["expired"], offer = await open_(borrowers[3], 5 * UNIT, ttl=2)

    loans["failed"], offer = await open_(borrowers[4], 5 * UNIT)
    assert isinstance(offer, LoanOffer)
    await loan_handle(client, loans["failed"]).signal(
        LoanWorkflow.settlement_failed,
        SettlementFailed(tx_hash=offer.funding.tx_hash, ledger=1, reason="bad_seq"),
    )

    loans["workflow_cancelled"], offer = await open_(borrowers[5], 5 * UNIT)
    await loan_handle(client, loans["workflow_cancelled"]).cancel()

    expected = {
        "funded": LoanState.FUNDED,
        "refused": LoanState.REFUSED,
        "cancelled": LoanState.CANCELLED,
        "expired": LoanState.EXPIRED,
        "failed": LoanState.FAILED,
        "workflow_cancelled": LoanState.CANCELLED,
    }
    for name, loan_id in loans.items():
        view = await wait_view(client, loan_id, within=30)
        assert view.state == expected[name], (name, view)
    for loan_id in loans.values():  # the last task (history close) may lag the query
        handle = loan_handle(client, loan_id)
        for _ in range(50):
            if (await handle.describe()).close_time is not None:
                break
            await asyncio.sleep(0.1)
    return loans


async def test_main_paths_on_an_uncached_worker_and_replay(saga_stack, deploy_pool, new_borrower):
    stack = saga_stack
    pool = await deploy_pool(liquidity=100 * UNIT)
    await stack.add_pool(pool)
    task_queue = f"nocache-{uuid.uuid4().hex[:8]}"
    worker = build_worker(
        stack.client, stack.clients, task_queue=task_queue, max_cached_workflows=0
    )
    async with worker:
        loans = await run_scenarios(stack.client, task_queue, stack, pool, new_borrower)

    status = await stack.ledger.status(pool.pool_id)
    assert (status.reserved, status.active_reservations) == (0, 0)
    record = os.environ.get("RECORD_HISTORIES") == "1"
    for name, loan_id in loans.items():
        history = await loan_handle(stack.client, loan_id).fetch_history()
        await replayer().replay_workflow(history)
        if record:
            HISTORIES.mkdir(exist_ok=True)
            (HISTORIES / f"loan_{name}.json").write_text(history.to_json())
    if not record and not any(HISTORIES.glob("*.json")):
        pytest.fail("no recorded histories: run with RECORD_HISTORIES=1 once")
