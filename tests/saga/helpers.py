"""Shared steps of the saga tests: build terms, open a loan, sign and submit, wait for a state."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from temporalio.client import Client

from chain.envelope import sign_envelope
from core.models import (
    TERMINAL_STATES,
    Installment,
    LoanInput,
    LoanOffer,
    LoanState,
    LoanTerms,
    LoanView,
    OpenLoan,
    OpenResult,
    SagaTimeouts,
)
from workflows.loan_client import loan_view, open_loan


def terms_for(borrower: str, vendor: str, funded: int) -> LoanTerms:
    """Terms whose pool-funded part is exactly `funded` (guarantee = funded / 4, i.e. 20 %)."""
    guarantee = max(1, funded // 4)
    total = funded + guarantee
    now = int(time.time())
    first = total // 2
    return LoanTerms(
        borrower=borrower,
        vendor=vendor,
        total_amount=total,
        guarantee_amount=guarantee,
        repayment_schedule=[
            Installment(amount=first, due_date=now + 30 * 86400),
            Installment(amount=total - first, due_date=now + 60 * 86400),
        ],
    )


async def open_test_loan(
    client: Client,
    task_queue: str,
    *,
    pool_id: str,
    creditline_id: str,
    terms: LoanTerms,
    ttl_seconds: int | None = None,
    loan_id: str | None = None,
    timeouts: SagaTimeouts | None = None,
) -> tuple[str, OpenResult]:
    loan_id = loan_id or uuid.uuid4().hex
    fingerprint = f"fp-{loan_id}"
    result = await open_loan(
        client,
        task_queue=task_queue,
        loan=LoanInput(
            loan_id=loan_id,
            pool_id=pool_id,
            creditline_id=creditline_id,
            terms=terms,
            fingerprint=fingerprint,
            ttl_seconds=ttl_seconds,
            timeouts=timeouts or SagaTimeouts(),
        ),
        request=OpenLoan(fingerprint=fingerprint, request_nonce=uuid.uuid4().hex),
        idempotency_key=f"key-{loan_id}",
    )
    return loan_id, result


def signed(offer: OpenResult, secret: str, passphrase: str) -> str:
    assert isinstance(offer, LoanOffer), offer
    return sign_envelope(offer.funding.xdr, secret, passphrase, expected_hash=offer.funding.tx_hash)


async def wait_view(
    client: Client,
    loan_id: str,
    predicate: Any = None,
    *,
    within: float = 30.0,
) -> LoanView:
    """Poll the loan's query until `predicate(view)` holds (default: a terminal state)."""
    predicate = predicate or (lambda v: v.state in TERMINAL_STATES)
    deadline = time.monotonic() + within
    view: LoanView | None = None
    while time.monotonic() < deadline:
        view = await loan_view(client, loan_id)
        if view is not None and predicate(view):
            return view
        await asyncio.sleep(0.1)
    raise AssertionError(f"loan {loan_id} did not reach the expected state; last view: {view}")


async def wait_state(
    client: Client, loan_id: str, state: LoanState, within: float = 30
) -> LoanView:
    view = await wait_view(client, loan_id, lambda v: v.state in TERMINAL_STATES, within=within)
    assert view.state == state, view
    return view


async def watcher_snapshot(ledger: Any, pool_id: str, at_least: int, within: float = 15) -> Any:
    """The pool's ledger status once the watcher has applied a chain snapshot at or after
    `at_least` (it does so on its own after funding events)."""
    deadline = time.monotonic() + within
    while True:
        status = await ledger.status(pool_id)
        if status.snapshot_ledger >= at_least or time.monotonic() > deadline:
            assert status.snapshot_ledger >= at_least, status
            return status
        await asyncio.sleep(0.1)
