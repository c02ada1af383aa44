"""A chain stall (this module's own devnet SIGSTOPped by its PID) under the real API, worker and
watcher processes (issue 13):

- a loan whose open step times out answers 503 loan_open_failed, reserves nothing, and from then
  on GET / submit / cancel of it answer (never 500), because its history replays (also on the
  Replayer, which caches nothing);
- `submit` during the stall answers 503 chain_unavailable within the RPC bound (RPC_TIMEOUT_
  SECONDS) instead of stellar-sdk's ~33 s, and after SIGCONT the loan funds, committed once."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from chain.envelope import sign_envelope
from core.money import UNIT
from devnet.kit import DevnetProcess, deploy_pool, new_funded_keypair
from liquidity.ledger import Ledger
from tests.api.helpers import assert_error, loan_body, wait_state
from tests.fixtures.devnet import running_devnet
from tests.fixtures.redis import REDIS_URL
from tests.ops.stack import OpsStack, ops_stack
from workflows.loan import LoanWorkflow
from workflows.loan_client import loan_handle

OPEN_BUDGET_S = 4.0
RPC_TIMEOUT_S = 3.0


@pytest.fixture(scope="module")
def own_devnet() -> Iterator[DevnetProcess]:
    with running_devnet(ledger_interval=0.5) as proc:
        yield proc


@pytest.fixture(scope="module")
async def stack(temporal_env: Any, own_devnet: DevnetProcess) -> AsyncIterator[OpsStack]:
    redis = aioredis.from_url(REDIS_URL, decode_responses=True)
    pool = await deploy_pool(own_devnet.rpc_url, own_devnet.passphrase, liquidity=100 * UNIT)
    try:
        async with ops_stack(
            temporal_env,
            own_devnet,
            redis,
            pool,
            open_step_timeout_seconds=2.0,
            open_budget_seconds=OPEN_BUDGET_S,
            rpc_timeout_seconds=RPC_TIMEOUT_S,
        ) as running:
            yield running
    finally:
        os.kill(own_devnet.pid, signal.SIGCONT)  # never leave it stopped
        await redis.aclose()


class paused:
    def __init__(self, pid: int) -> None:
        self.pid = pid

    def __enter__(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def __exit__(self, *_: object) -> None:
        os.kill(self.pid, signal.SIGCONT)


async def _borrower(devnet: DevnetProcess, stack: OpsStack) -> tuple[Any, Any]:
    vendor = await new_funded_keypair(devnet.rpc_url)
    borrower = await new_funded_keypair(
        devnet.rpc_url, token_id=stack.pool.token_id, token_amount=100 * UNIT
    )
    return borrower, vendor


async def _reserved(stack: OpsStack) -> tuple[int, int]:
    redis = aioredis.from_url(REDIS_URL, decode_responses=True)
    try:
        status = await Ledger(redis, prefix=stack.settings.ledger_prefix).status(stack.pool.pool_id)
    finally:
        await redis.aclose()
    return status.reserved, status.active_reservations


async def test_a_loan_whose_open_timed_out_stays_readable(
    stack: OpsStack, own_devnet: DevnetProcess, temporal_env: Any
) -> None:
    borrower, vendor = await _borrower(own_devnet, stack)
    body = loan_body(stack.pool.pool_id, borrower.public_key, vendor.public_key)
    async with stack.http() as http:
        with paused(own_devnet.pid):  # past the open budget: the build step times out
            started = time.monotonic()
            opened = await http.post(
                "/v1/loans", json=body, headers={"Idempotency-Key": f"stall-{uuid.uuid4()}"}
            )
            took = time.monotonic() - started
        details = assert_error(opened, 503, "loan_open_failed")
        assert took < OPEN_BUDGET_S + 10, took
        loan_id = details["loan_id"]

        view = await wait_state(http, loan_id, {"failed"})
        assert view["failure_reason"] == "unavailable", view
        assert await _reserved(stack) == (0, 0)  # the reservation was given back

        # every route of the loan answers from its replayed history, none with a 500
        for _ in range(3):
            got = await http.get(f"/v1/loans/{loan_id}")
            assert got.status_code == 200 and got.json()["state"] == "failed", got.text
        submitted = await http.post(f"/v1/loans/{loan_id}/submit", json={"signed_xdr": "AAAA"})
        assert_error(submitted, 409, "loan_not_reserved")
        cancelled = await http.post(f"/v1/loans/{loan_id}/cancel", json={})
        assert_error(cancelled, 409, "loan_closed")

    history = await loan_handle(temporal_env.client, loan_id).fetch_history()
    await Replayer(
        workflows=[LoanWorkflow], data_converter=pydantic_data_converter
    ).replay_workflow(history)


async def test_submit_during_a_chain_stall_is_bounded_and_the_loan_funds(
    stack: OpsStack, own_devnet: DevnetProcess
) -> None:
    borrower, vendor = await _borrower(own_devnet, stack)
    body = loan_body(stack.pool.pool_id, borrower.public_key, vendor.public_key)
    async with stack.http() as http:
        opened = await http.post(
            "/v1/loans", json=body, headers={"Idempotency-Key": f"stall-{uuid.uuid4()}"}
        )
        assert opened.status_code == 201, opened.text
        offer = opened.json()
        loan_id = offer["loan_id"]
        signed = sign_envelope(offer["funding"]["xdr"], borrower.secret, own_devnet.passphrase)
        with paused(own_devnet.pid):
            started = time.monotonic()
            stalled = await http.post(f"/v1/loans/{loan_id}/submit", json={"signed_xdr": signed})
            took = time.monotonic() - started
            assert_error(stalled, 503, "chain_unavailable")
            assert stalled.headers.get("retry-after")
            assert took < RPC_TIMEOUT_S + 3, f"submit waited {took:.1f} s"
            got = await http.get(f"/v1/loans/{loan_id}")  # reads need no chain
            assert got.status_code == 200 and got.json()["state"] == "reserved", got.text

        # The stalled relay may still reach the chain once it resumes; the retry is answered
        # either way, and the loan funds exactly once.
        retried = await http.post(f"/v1/loans/{loan_id}/submit", json={"signed_xdr": signed})
        assert retried.status_code == 202, retried.text
        funded = await wait_state(http, loan_id, {"funded"}, within=60)
        assert funded["settled_ledger"], funded
    assert await _reserved(stack) == (0, 0)
