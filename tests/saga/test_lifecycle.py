"""The saga's other endings on the real stack: refusals, on-chain failure, cancel (signal and
workflow cancellation), duplicate settlement signals, idempotent open."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from temporalio.client import WorkflowExecutionStatus

from core.models import (
    Cancel,
    Installment,
    LoanInput,
    LoanOffer,
    LoanRefusal,
    LoanState,
    OpenLoan,
    Settled,
    SettlementFailed,
    Submitted,
)
from core.money import UNIT
from devnet.kit import create_loan_direct, wait_for_tx
from reconcile.reconciler import establish_pool
from tests.saga.helpers import open_test_loan, signed, terms_for, wait_state
from workflows.loan import LoanWorkflow
from workflows.loan_client import (
    LoanClosed,
    loan_handle,
    loan_view,
    open_loan,
    signal_cancel,
    signal_settled,
    signal_settlement_failed,
    signal_submitted,
)


@pytest.fixture
async def pool(saga_stack, deploy_pool):
    deployed = await deploy_pool(liquidity=100 * UNIT)
    await saga_stack.add_pool(deployed)
    return deployed


async def open_in(stack, pool, borrower, vendor, funded, **kw):
    return await open_test_loan(
        stack.client,
        stack.task_queue,
        pool_id=pool.pool_id,
        creditline_id=pool.creditline_id,
        terms=terms_for(borrower.public_key, vendor.public_key, funded),
        **kw,
    )


async def test_refusals_are_typed_results_and_reserve_nothing(saga_stack, pool, new_borrower):
    stack = saga_stack
    borrower, vendor = await new_borrower(pool), await new_borrower()

    # Insufficient liquidity: figures of the ledger at the time of the refusal.
    _, result = await open_in(stack, pool, borrower, vendor, 101 * UNIT)
    assert isinstance(result, LoanRefusal) and result.code == "insufficient_liquidity", result
    assert result.details == {"available": 100 * UNIT, "required": 101 * UNIT, "shortage": UNIT}

    # Credit declined: every reason at once (no guarantee, schedule in the past, bad sum).
    terms = terms_for(borrower.public_key, vendor.public_key, 10 * UNIT)
    terms.guarantee_amount = 0
    terms.repayment_schedule = [Installment(amount=1, due_date=1)]
    _, result = await open_test_loan(
        stack.client,
        stack.task_queue,
        pool_id=pool.pool_id,
        creditline_id=pool.creditline_id,
        terms=terms,
    )
    assert isinstance(result, LoanRefusal) and result.code == "credit_declined", result
    assert len(result.details["reasons"]) >= 3

    # An amount i128 can carry but int64 cannot (the AmountStroops search attribute) is still
    # assessed and declined, not a wedged workflow task.
    huge = terms_for(borrower.public_key, vendor.public_key, 2**100)
    _, result = await open_test_loan(
        stack.client,
        stack.task_queue,
        pool_id=pool.pool_id,
        creditline_id=pool.creditline_id,
        terms=huge,
    )
    assert isinstance(result, LoanRefusal) and result.code == "credit_declined", result

    # Pool unknown to the ledger (never established): fail closed.
    _, result = await open_test_loan(
        stack.client,
        stack.task_queue,
        pool_id=f"CUNKNOWN{uuid.uuid4().hex}",
        creditline_id=pool.creditline_id,
        terms=terms_for(borrower.public_key, vendor.public_key, UNIT),
    )
    assert isinstance(result, LoanRefusal) and result.code == "pool_unknown", result

    # Frozen pool.
    await stack.ledger.freeze(pool.pool_id, reason="drift")
    try:
        loan_id, result = await open_in(stack, pool, borrower, vendor, UNIT)
        assert isinstance(result, LoanRefusal) and result.code == "pool_frozen", result
    finally:
        await stack.ledger.unfreeze(pool.pool_id, reason="test done")
    view = await wait_state(stack.client, loan_id, LoanState.REFUSED)
    assert view.refusal is not None and view.refusal.code == "pool_frozen"

    status = await stack.ledger.status(pool.pool_id)
    assert (status.reserved, status.active_reservations) == (0, 0)


async def test_same_key_returns_same_offer_and_closed_loan_rejects_new_key(
    saga_stack, pool, new_borrower
):
    stack = saga_stack
    borrower, vendor = await new_borrower(pool), await new_borrower()
    loan_id = uuid.uuid4().hex
    loan = LoanInput(
        loan_id=loan_id,
        pool_id=pool.pool_id,
        creditline_id=pool.creditline_id,
        terms=terms_for(borrower.public_key, vendor.public_key, 5 * UNIT),
        fingerprint="fp",
    )

    async def call(key: str, nonce: str):
        return await open_loan(
            stack.client,
            task_queue=stack.task_queue,
            loan=loan,
            request=OpenLoan(fingerprint="fp", request_nonce=nonce),
            idempotency_key=key,
        )

    # A request racing its own duplicate gets the one result (one reservation).
    first, second = await asyncio.gather(call("k1", "n1"), call("k1", "n2"))
    assert isinstance(first, LoanOffer) and first == second
    assert (await stack.ledger.status(pool.pool_id)).reserved == 5 * UNIT

    await signal_cancel(stack.client, loan_id, Cancel(reason="changed my mind"))
    await wait_state(stack.client, loan_id, LoanState.CANCELLED)
    again = await call("k1", "n3")  # same key after close: the stored result
    assert again == first
    with pytest.raises(LoanClosed):
        await call("k2", "n4")  # another key for a closed loan never reserves again
    assert (await stack.ledger.status(pool.pool_id)).reserved == 0


async def test_on_chain_failure_releases(saga_stack, pool, new_borrower):
    """A loan created around the saga drains the pool; our signed transaction then fails on chain
    (a failed transaction emits no event: the watcher finds it by polling the relayed hash)."""
    stack = saga_stack
    borrower, other, vendor = (
        await new_borrower(pool),
        await new_borrower(pool),
        await new_borrower(),
    )
    loan_id, offer = await open_in(stack, pool, borrower, vendor, 40 * UNIT)
    assert isinstance(offer, LoanOffer)

    drained = await create_loan_direct(
        stack.settings.rpc_url,
        stack.settings.network_passphrase,
        pool.creditline_id,
        terms_for(other.public_key, vendor.public_key, 80 * UNIT),
        other.secret,
    )
    assert drained.status == "success", drained

    sent = await stack.chain.submit(
        signed(offer, borrower.secret, stack.settings.network_passphrase)
    )
    assert sent.status == "pending", sent
    await signal_submitted(stack.client, loan_id, Submitted(tx_hash=sent.tx_hash))
    landed = await wait_for_tx(stack.chain, sent.tx_hash, timeout=15)
    assert landed.status == "failed" and landed.reason == "insufficient_liquidity", landed

    view = await wait_state(stack.client, loan_id, LoanState.FAILED)
    assert view.failure_reason == "insufficient_liquidity"
    assert await stack.ledger.reservation(pool.pool_id, loan_id) is None
    actions = [e.action for e in await stack.ledger.audit(pool.pool_id) if e.loan_id == loan_id]
    assert "release" in actions and "commit" not in actions


async def test_cancel_signal_releases(saga_stack, pool, new_borrower):
    stack = saga_stack
    borrower, vendor = await new_borrower(pool), await new_borrower()
    loan_id, offer = await open_in(stack, pool, borrower, vendor, 30 * UNIT)
    assert isinstance(offer, LoanOffer)
    assert (await stack.ledger.status(pool.pool_id)).available == 70 * UNIT
    await signal_cancel(stack.client, loan_id, Cancel(reason="borrower gave up"))
    view = await wait_state(stack.client, loan_id, LoanState.CANCELLED)
    assert view.history[-1].detail.startswith("borrower gave up")
    assert (await stack.ledger.status(pool.pool_id)).available == 100 * UNIT


async def test_workflow_cancellation_runs_the_compensation(saga_stack, pool, new_borrower):
    stack = saga_stack
    borrower, vendor = await new_borrower(pool), await new_borrower()
    loan_id, offer = await open_in(stack, pool, borrower, vendor, 30 * UNIT)
    assert isinstance(offer, LoanOffer)
    handle = loan_handle(stack.client, loan_id)
    await handle.cancel()
    for _ in range(100):
        if (await handle.describe()).status == WorkflowExecutionStatus.CANCELED:
            break
        await asyncio.sleep(0.1)
    assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
    assert await stack.ledger.reservation(pool.pool_id, loan_id) is None
    assert (await stack.ledger.status(pool.pool_id)).available == 100 * UNIT
    view = await handle.query(LoanWorkflow.status)
    assert view.state == LoanState.CANCELLED


async def test_duplicate_settlement_signals_commit_once(saga_stack, deploy_pool, new_borrower):
    """At-least-once delivery: the same settlement arriving several times (and a contradicting
    failure after it) commits exactly once. The pool is established but not given to the watcher,
    so this test alone decides which signals arrive."""
    stack = saga_stack
    pool = await deploy_pool(liquidity=100 * UNIT)
    await establish_pool(stack.ledger, stack.chain, pool.pool_id)
    borrower, vendor = await new_borrower(pool), await new_borrower()
    loan_id, offer = await open_in(stack, pool, borrower, vendor, 20 * UNIT)
    assert isinstance(offer, LoanOffer)
    # A settlement for some other hash is not ours and must not end the loan.
    await signal_settled(stack.client, loan_id, Settled(tx_hash="00" * 32, ledger=1))

    sent = await stack.chain.submit(
        signed(offer, borrower.secret, stack.settings.network_passphrase)
    )
    landed = await wait_for_tx(stack.chain, sent.tx_hash, timeout=15)
    assert landed.status == "success", landed
    view = await loan_view(stack.client, loan_id)
    assert view is not None and view.state == LoanState.RESERVED

    async def deliver(signal) -> bool:
        try:
            if isinstance(signal, Settled):
                await signal_settled(stack.client, loan_id, signal)
            else:
                await signal_settlement_failed(stack.client, loan_id, signal)
            return True
        except LoanClosed:
            return False

    real = Settled(tx_hash=sent.tx_hash, ledger=landed.ledger)
    late_failure = SettlementFailed(tx_hash=sent.tx_hash, reason="too_late")
    delivered = await asyncio.gather(*(deliver(real) for _ in range(4)))
    assert any(delivered)
    await deliver(late_failure)  # contradicts a settlement already received: ignored

    view = await wait_state(stack.client, loan_id, LoanState.FUNDED)
    assert view.settled_ledger == landed.ledger and view.failure_reason is None
    commits = [
        e
        for e in await stack.ledger.audit(pool.pool_id)
        if e.loan_id == loan_id and "commit" in e.action
    ]
    assert len(commits) == 1 and commits[0].action == "commit", commits
    assert (await stack.ledger.status(pool.pool_id)).reserved == 0


async def test_second_open_loan_of_one_borrower_is_declined_not_doomed_on_chain(
    saga_stack, pool, new_borrower
):
    """Both funding transactions would use the borrower's next sequence number, so at most one
    could ever land (with identical terms in one second they would even share a hash): the
    second loan is declined up front and gives its reservation back."""
    stack = saga_stack
    borrower, vendor = await new_borrower(pool), await new_borrower()
    first_id, first = await open_in(stack, pool, borrower, vendor, 10 * UNIT)
    _, second = await open_in(stack, pool, borrower, vendor, 10 * UNIT)
    assert isinstance(first, LoanOffer), first
    assert isinstance(second, LoanRefusal) and second.code == "credit_declined", second
    assert second.details["chain"] == "sequence_in_use"
    assert first_id in second.details["reasons"][0]
    reserved = {r.loan_id: r.amount for r in await stack.ledger.reservations(pool.pool_id)}
    assert reserved == {first_id: 10 * UNIT}

    # The first loan still settles normally.
    await stack.client.get_workflow_handle(f"loan-{first_id}").signal(
        LoanWorkflow.submitted, Submitted(tx_hash=first.funding.tx_hash)
    )
    submitted = await stack.chain.submit(
        signed(first, borrower.secret, stack.settings.network_passphrase)
    )
    assert submitted.status == "pending", submitted
    view = await wait_state(stack.client, first_id, LoanState.FUNDED)
    assert view.state == LoanState.FUNDED


async def test_a_released_loan_frees_the_borrowers_sequence_at_once(saga_stack, pool, new_borrower):
    """Cancelling (or expiry, or an on-chain failure) gives the sequence claim back with the
    reservation, so the borrower's next loan is not declined until the old max_time."""
    stack = saga_stack
    borrower, vendor = await new_borrower(pool), await new_borrower()
    first_id, first = await open_in(stack, pool, borrower, vendor, 10 * UNIT)
    assert isinstance(first, LoanOffer), first
    await signal_cancel(stack.client, first_id, Cancel(reason="changed my mind"))
    await wait_state(stack.client, first_id, LoanState.CANCELLED)

    second_id, second = await open_in(stack, pool, borrower, vendor, 10 * UNIT)
    assert isinstance(second, LoanOffer), second
    # Same terms within the same second build the very same transaction: it now belongs to the
    # second loan, which settles; the cancelled one stays cancelled.
    submitted = await stack.chain.submit(
        signed(second, borrower.secret, stack.settings.network_passphrase)
    )
    assert submitted.status == "pending", submitted
    await wait_state(stack.client, second_id, LoanState.FUNDED)
    first_view = await loan_view(stack.client, first_id)
    assert first_view is not None and first_view.state == LoanState.CANCELLED
