"""Expiry: a loan nobody signs gives its liquidity back, and the XDR it handed out is dead.

The reservation's life is the transaction's life (max_time = expires_at), which is what makes the
release safe: submitting the signed XDR after expiry fails on chain as too late."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from core.models import LoanOffer, LoanState
from core.money import UNIT
from devnet.kit import wait_for_tx
from runtime.worker import build_worker
from tests.fixtures.temporal import start_temporal
from tests.saga.helpers import open_test_loan, signed, terms_for, wait_state
from workflows.loan import LoanWorkflow
from workflows.loan_client import loan_handle


async def test_unsigned_loan_expires_and_its_xdr_is_too_late(saga_stack, deploy_pool, new_borrower):
    stack = saga_stack
    pool = await deploy_pool(liquidity=50 * UNIT)
    await stack.add_pool(pool)
    borrower, vendor = await new_borrower(pool), await new_borrower()
    loan_id, offer = await open_test_loan(
        stack.client,
        stack.task_queue,
        pool_id=pool.pool_id,
        creditline_id=pool.creditline_id,
        terms=terms_for(borrower.public_key, vendor.public_key, 50 * UNIT),
        ttl_seconds=2,
    )
    assert isinstance(offer, LoanOffer)
    assert (await stack.ledger.status(pool.pool_id)).available == 0

    view = await wait_state(stack.client, loan_id, LoanState.EXPIRED, within=30)
    assert await stack.ledger.reservation(pool.pool_id, loan_id) is None
    assert (await stack.ledger.status(pool.pool_id)).available == 50 * UNIT
    assert view.history[-1].at.timestamp() >= offer.funding.expires_at

    sent = await stack.chain.submit(
        signed(offer, borrower.secret, stack.settings.network_passphrase)
    )
    if sent.status == "error":  # refused at the door, as Stellar Core does
        assert sent.reason == "too_late", sent
    else:
        landed = await wait_for_tx(stack.chain, sent.tx_hash, timeout=15)
        assert landed.status == "failed" and landed.reason == "too_late", landed
    stats = await stack.chain.pool_stats(pool.pool_id)
    assert stats.locked_liquidity == 0


@pytest.fixture(scope="module")
async def skipping_env():
    env = await start_temporal(time_skipping=True)
    yield env
    await env.shutdown()


async def test_long_ttl_expiry_under_time_skipping(
    skipping_env, saga_stack, deploy_pool, new_borrower
):
    """A one-day reservation expires in seconds of wall time: the workflow's timer is skipped by
    the server (the ledger and chain are real, so the release is the workflow's own doing)."""
    stack = saga_stack
    pool = await deploy_pool(liquidity=50 * UNIT)
    await stack.add_pool(pool)
    borrower, vendor = await new_borrower(pool), await new_borrower()
    task_queue = f"skip-{uuid.uuid4().hex[:8]}"
    async with build_worker(skipping_env.client, stack.clients, task_queue=task_queue):
        loan_id, offer = await open_test_loan(
            skipping_env.client,
            task_queue,
            pool_id=pool.pool_id,
            creditline_id=pool.creditline_id,
            terms=terms_for(borrower.public_key, vendor.public_key, 20 * UNIT),
            ttl_seconds=86_400,
        )
        assert isinstance(offer, LoanOffer)
        reservation = await stack.ledger.reservation(pool.pool_id, loan_id)
        assert reservation is not None and reservation.amount == 20 * UNIT

        handle = loan_handle(skipping_env.client, loan_id)
        view = await handle.result(rpc_timeout=timedelta(seconds=60))
        assert view.state == LoanState.EXPIRED, view
        expired_at = view.history[-1].at.timestamp()
        assert expired_at >= offer.funding.expires_at  # virtual time passed the whole day
        assert await stack.ledger.reservation(pool.pool_id, loan_id) is None
        assert (await stack.ledger.status(pool.pool_id)).available == 50 * UNIT
        assert (await handle.query(LoanWorkflow.status)).state == LoanState.EXPIRED
