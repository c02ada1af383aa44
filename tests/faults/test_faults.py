"""Faults injected into a live stack around loans in flight (issue 13, "How it is judged"): the
devnet, the worker and Temporal paused (SIGSTOP / SIGCONT by PID), the worker SIGKILLed during
the open steps, the pool's ledger keys deleted from Redis. Every cell opens loans over HTTP
before and while the fault is on and has the borrower sign and submit some of them, then checks
what a user and an operator rely on:

- every loan ends terminal, or rests in its correct open state (`reserved`, its offer handed out);
- no `GET /v1/loans/{id}` answers 5xx or takes longer than GET_BOUND_S (polled all along,
  except while Temporal itself, the store the answer comes from, is paused; after it, none);
- the ledger's `reserved` equals the sum of the open loans' reservations;
- after one reconciler run the pool's ledger figures equal the chain's.

The cells share one pool (tests/faults/conftest.py), so each checks the invariants over every
loan the module has opened, in whatever state the earlier cells left them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from stellar_sdk import Keypair

from api.routes.loans import loan_id_for
from chain.envelope import sign_envelope
from core.models import TERMINAL_STATES
from core.money import UNIT, to_stroops
from core.settings import Settings
from devnet.kit import new_funded_keypair
from tests.api.helpers import loan_body
from tests.faults.conftest import Live
from tests.saga.procs import Proc

FUNDED = 10 * UNIT  # each loan's pool-funded part (20 % guarantee on top)
STALL_S = 7.0  # well over GET_BOUND_S: a GET that waits for the paused process shows
GET_BOUND_S = 4.5  # a GET slower counts as unanswered (the issue wants 1 s; 2 busy cores)
TERMINAL = {str(s) for s in TERMINAL_STATES}
HOLDING = {"reserved", "submitted"}

# Issue 13 defect 3 (reads that need a live worker): until loan reads come from what Temporal
# serves without a worker (its fix brings LOAN_READ_TIMEOUT_SECONDS), a GET waits for a paused
# or killed worker, or for a workflow task held open by a local activity on a stalled chain.
NEEDS_DEFECT_3 = pytest.mark.xfail(
    "loan_read_timeout_seconds" not in Settings.model_fields,
    reason="issue 13 defect 3: GET /v1/loans/{id} needs a live worker (fix not merged yet)",
    strict=True,
)


@dataclass
class Watch:
    """Every GET answer of the module's loans, polled while a cell runs."""

    failures: list[str] = field(default_factory=list)
    paused: bool = False  # while Temporal itself is stopped: answers are not judged

    def judge(self, loan_id: str, status: int | None, text: str) -> None:
        if self.paused:
            return
        if status is None:
            self.failures.append(f"GET {loan_id}: no answer within {GET_BOUND_S:g} s ({text})")
        elif status >= 500:
            self.failures.append(f"GET {loan_id}: {status} {text[:300]}")


@contextlib.asynccontextmanager
async def watching_gets(live: Live) -> AsyncIterator[Watch]:
    watch = Watch()

    async def poll(http: httpx.AsyncClient) -> None:
        while True:
            for loan_id in list(live.keys):
                try:
                    reply = await http.get(f"/v1/loans/{loan_id}")
                    watch.judge(loan_id, reply.status_code, reply.text)
                except httpx.TimeoutException as exc:
                    watch.judge(loan_id, None, type(exc).__name__)
            await asyncio.sleep(0.2)

    async with live.ops.http() as http:
        http.timeout = httpx.Timeout(GET_BOUND_S)
        task = asyncio.create_task(poll(http))
        try:
            yield watch
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def new_borrowers(live: Live, n: int) -> list[Keypair]:
    """One borrower per loan: a borrower's open funding transaction holds its sequence number."""
    return list(
        await asyncio.gather(
            *(
                new_funded_keypair(
                    live.devnet.rpc_url, token_id=live.ops.pool.token_id, token_amount=100 * UNIT
                )
                for _ in range(n)
            )
        )
    )


async def open_loan(live: Live, borrower: Keypair) -> tuple[str, httpx.Response]:
    """POST /v1/loans as a client does: a 5xx that is not a 500 is retried with the same key
    until the loan's real outcome comes back (bounded)."""
    key = f"fault-{uuid.uuid4()}"
    loan_id = loan_id_for(key)
    live.keys[loan_id] = key
    live.borrower_of[loan_id] = borrower
    body = loan_body(
        live.pool_id, borrower.public_key, live.vendor.public_key, total="12.5", guarantee="2.5"
    )
    deadline = time.monotonic() + 60
    async with live.ops.http() as http:
        while True:
            reply = await http.post("/v1/loans", json=body, headers={"Idempotency-Key": key})
            assert reply.status_code != 500, reply.text  # no fault reaches a 500
            if reply.status_code < 500 or final(reply) or time.monotonic() > deadline:
                # A retry after a transient refusal may open the key's loan under a new id
                # (the refused attempt stays a loan of its own): the answer names it.
                answered = answered_loan_id(reply) or loan_id
                live.keys[answered] = key
                live.borrower_of[answered] = borrower
                live.answers[answered] = f"{reply.status_code} {reply.text[:200]}"
                return answered, reply
            await asyncio.sleep(min(float(reply.headers.get("Retry-After", 1)), 1.0))


# 503s that are the loan's outcome, not "try again": its open steps timed out (reservation
# released), or they started only after the request's deadline (nothing reserved).
FINAL_503 = {"loan_open_failed", "open_deadline_passed"}


def answered_loan_id(reply: httpx.Response) -> str | None:
    try:
        body = reply.json()
        loan_id = body.get("loan_id") or body["error"]["details"].get("loan_id")
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return str(loan_id) if loan_id else None


def final(reply: httpx.Response) -> bool:
    try:
        return bool(reply.json()["error"]["code"] in FINAL_503)
    except (ValueError, KeyError, TypeError):
        return False


async def submit(live: Live, loan: dict[str, Any]) -> None:
    """The borrower signs the offer and the platform relays it (retried on a 5xx, bounded)."""
    borrower = live.borrower_of[loan["loan_id"]]
    signed = sign_envelope(loan["funding"]["xdr"], borrower.secret, live.devnet.passphrase)
    deadline = time.monotonic() + 60
    async with live.ops.http() as http:
        while True:
            reply = await http.post(
                f"/v1/loans/{loan['loan_id']}/submit", json={"signed_xdr": signed}
            )
            assert reply.status_code != 500, reply.text
            if reply.status_code < 500 or time.monotonic() > deadline:
                assert reply.status_code == 202, reply.text
                return
            await asyncio.sleep(1.0)


async def views(live: Live) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    async with live.ops.http() as http:
        for loan_id in live.keys:
            reply = await http.get(f"/v1/loans/{loan_id}")
            assert reply.status_code in (200, 404), (loan_id, reply.status_code, reply.text)
            if reply.status_code == 200:
                found[loan_id] = reply.json()
    return found


def at_rest(view: dict[str, Any]) -> bool:
    if view["state"] in TERMINAL:
        return True
    return view["state"] == "reserved" and bool(view.get("funding"))


async def settled(
    live: Live, funded: Collection[str] = (), within: float = 60
) -> dict[str, dict[str, Any]]:
    """Every loan of the module terminal or reserved with its offer (nothing mid-step), and
    those in `funded` (signed and relayed) funded."""
    deadline = time.monotonic() + within
    while True:
        found = await views(live)
        moving = {
            i: v["state"]
            for i, v in found.items()
            if not at_rest(v) or (i in funded and v["state"] != "funded")
        }
        if not moving:
            return found
        assert time.monotonic() < deadline, f"loans still moving after {within}s: {moving}"
        await asyncio.sleep(0.3)


async def assert_invariants(live: Live) -> None:
    found = await settled(live)
    holding = [v for v in found.values() if v["state"] in HOLDING]
    status = await live.ledger.status(live.pool_id)
    assert status.known and not status.frozen, status
    held = {r.loan_id: r.amount for r in await live.ledger.reservations(live.pool_id)}
    for loan_id in held:  # shown when the assertion below fails
        print("held:", loan_id, found.get(loan_id, {}).get("state"), live.answers.get(loan_id))
    for loan_id, view in found.items():
        print("loan:", loan_id, view["state"], view["reserved_amount"], live.answers.get(loan_id))
    assert status.reserved == sum(to_stroops(v["reserved_amount"]) for v in holding), (
        status,
        {i: (found[i]["state"] if i in found else live.answers.get(i), held[i]) for i in held},
        {v["loan_id"]: v["state"] for v in holding},
    )
    assert status.active_reservations == len(holding), status

    async with live.ops.http() as http:
        run = await http.post("/v1/admin/reconcile", json={"pool_ids": [live.pool_id]})
    assert run.status_code == 200, run.text
    assert not run.json()["failures"], run.text
    status = await live.ledger.status(live.pool_id)
    chain = await live.chain.pool_stats(live.pool_id)
    assert (status.total, status.locked, status.chain_available, status.pending_commits) == (
        chain.total_liquidity,
        chain.locked_liquidity,
        chain.available_liquidity,
        0,
    ), (status, chain)
    assert status.reserved == sum(to_stroops(v["reserved_amount"]) for v in holding), status
    assert status.overcommit == 0 and not status.frozen, status


@contextlib.contextmanager
def stopped(pid: int) -> Any:
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


async def cell(live: Live, fault: Callable[[Watch, Callable[[], None]], Awaitable[None]]) -> None:
    """Two loans opened and reserved before the fault are submitted as it begins; two are
    opened just before it and two while it is on (in flight across it); then the invariants."""
    borrowers = await new_borrowers(live, 6)
    before = [await open_loan(live, b) for b in borrowers[:2]]
    offers = []
    for _, reply in before:
        assert reply.status_code == 201, reply.text
        offers.append(reply.json())
    async with watching_gets(live) as watch:
        tasks: list[asyncio.Task[Any]] = [
            asyncio.create_task(open_loan(live, b)) for b in borrowers[2:4]
        ]
        await asyncio.sleep(0.1)

        def during() -> None:  # called by the fault once it is on
            tasks.extend(asyncio.create_task(submit(live, offer)) for offer in offers)
            tasks.extend(asyncio.create_task(open_loan(live, b)) for b in borrowers[4:])

        await fault(watch, during)
        results = await asyncio.gather(*tasks)
        for result in results:
            if result is not None:
                loan_id, reply = result
                assert reply.status_code < 500 or final(reply), (loan_id, reply.text)
        for offer in offers:
            async with live.ops.http() as http:
                reply = await http.get(f"/v1/loans/{offer['loan_id']}")
            assert reply.status_code == 200
        found = await settled(live, funded={offer["loan_id"] for offer in offers})
        for offer in offers:
            assert found[offer["loan_id"]]["state"] == "funded", found[offer["loan_id"]]
        assert not watch.failures, watch.failures
    await assert_invariants(live)


@NEEDS_DEFECT_3
async def test_devnet_paused_around_loans_in_flight(live: Live) -> None:
    async def fault(watch: Watch, during: Callable[[], None]) -> None:
        with stopped(live.devnet.pid):
            during()
            await asyncio.sleep(STALL_S)

    await cell(live, fault)


@NEEDS_DEFECT_3
async def test_worker_paused_around_loans_in_flight(live: Live) -> None:
    async def fault(watch: Watch, during: Callable[[], None]) -> None:
        with stopped(live.ops.procs["worker"].pid):
            during()
            await asyncio.sleep(STALL_S)

    await cell(live, fault)


async def test_temporal_paused_around_loans_in_flight(live: Live) -> None:
    async def fault(watch: Watch, during: Callable[[], None]) -> None:
        watch.paused = True
        try:
            with stopped(live.temporal.pid):
                during()
                await asyncio.sleep(STALL_S)
        finally:
            await asyncio.sleep(1.0)  # GETs sent into the stall get their answers
            watch.paused = False

    await cell(live, fault)


@NEEDS_DEFECT_3
async def test_worker_killed_during_the_open_steps(live: Live) -> None:
    async def fault(watch: Watch, during: Callable[[], None]) -> None:
        old = live.ops.procs["worker"]
        old.kill()
        old.stop()  # closes its log
        during()
        await asyncio.sleep(1.0)
        live.ops.procs["worker"] = Proc("worker.py", live.ops.settings)

    await cell(live, fault)


async def test_ledger_keys_deleted_mid_flight(live: Live) -> None:
    async def fault(watch: Watch, during: Callable[[], None]) -> None:
        keys = live.ledger.keys(live.pool_id)
        pattern = keys.state.rsplit(":", 1)[0] + ":*"
        deleted = [key async for key in live.redis.scan_iter(match=pattern, count=1000)]
        assert deleted
        await live.redis.delete(*deleted)
        during()
        await asyncio.sleep(1.0)
        # The reconciler (its Schedule, or an operator) re-establishes the pool from the chain
        # and restores every open loan's hold; until then the pool fails closed.
        async with live.ops.http() as http:
            run = await http.post("/v1/admin/reconcile", json={"pool_ids": [live.pool_id]})
        assert run.status_code == 200, run.text

    await cell(live, fault)
