"""Property test: the real Lua scripts on the real Redis and a plain Python model are driven side
by side through random sequences; every result and every counter must agree.

Hypothesis state machines are synchronous, so the real async Ledger runs on a dedicated event loop
(one run_until_complete per call). Expiry uses real Redis time: a "short" reservation gets a 1 ms
TTL and the step then sleeps a few ms, so from the next step on it is unambiguously expired and the
model knows exactly when it is swept (by the next reserve or sweep)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from liquidity import (
    AlreadyTerminal,
    BorrowerLimitExceeded,
    CommitResult,
    Frozen,
    Insufficient,
    Ledger,
    ReleaseResult,
    Reserved,
    SnapshotResult,
)
from liquidity.connection import RedisClient
from tests.fixtures.redis import client_for, delete_prefix, forget_pool
from tests.liquidity.invariants import check

T = TypeVar("T")
LOANS = [f"L{i}" for i in range(6)]  # few ids, so repeats and races on one loan are common
BORROWERS = ["alice", "bob", "carol"]
LIMIT = 3_000
BUFFER = 50


@dataclass
class Active:
    borrower: str
    amount: int
    short: bool  # 1 ms TTL: expired from the step after it was granted


class LedgerModel:
    """The specification, in plain Python ints."""

    def __init__(self, chain: int, ledger: int) -> None:
        self.chain, self.ledger, self.frozen = chain, ledger, False
        self.active: dict[str, Active] = {}
        self.terminal: dict[str, tuple[str, int]] = {}  # loan -> (state, amount)
        self.pending: dict[str, tuple[int, int]] = {}  # loan -> (commit ledger, amount)

    @property
    def reserved(self) -> int:
        return sum(a.amount for a in self.active.values())

    @property
    def pending_total(self) -> int:
        return sum(a for _, a in self.pending.values())

    @property
    def available(self) -> int:
        return self.chain - self.pending_total - self.reserved - BUFFER

    def sweep(self) -> list[str]:
        gone = sorted(loan for loan, a in self.active.items() if a.short)
        for loan in gone:
            self.terminal[loan] = ("released", self.active.pop(loan).amount)
        return gone

    def exposure(self, borrower: str) -> int:
        return sum(a.amount for a in self.active.values() if a.borrower == borrower)


class LedgerMachine(RuleBasedStateMachine):
    loop: asyncio.AbstractEventLoop
    ledger: Ledger
    redis: RedisClient

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    @initialize(chain=st.integers(0, 6_000))
    def establish(self, chain: int) -> None:
        self.pool = f"model-{uuid.uuid4().hex[:10]}"
        self.model = LedgerModel(chain, 100)
        result = self.run(
            self.ledger.apply_snapshot(
                self.pool, ledger=100, total=chain, locked=0, available=chain, establish=True
            )
        )
        assert result.outcome == "applied"

    def teardown(self) -> None:
        if hasattr(self, "pool"):
            self.run(forget_pool(self.redis, self.ledger, self.pool))

    @rule(
        loan=st.sampled_from(LOANS),
        borrower=st.sampled_from(BORROWERS),
        amount=st.integers(1, 2_000),
        short=st.booleans(),
    )
    def reserve(self, loan: str, borrower: str, amount: int, short: bool) -> None:
        m = self.model
        got = self.run(
            self.ledger.reserve(
                self.pool,
                loan,
                borrower,
                amount,
                ttl_ms=1 if short else 600_000,
                borrower_limit=LIMIT,
            )
        )
        m.sweep()
        if loan in m.active:
            assert isinstance(got, Reserved) and got.replayed
            assert got.amount == m.active[loan].amount
        elif loan in m.terminal:
            assert got == AlreadyTerminal(state=m.terminal[loan][0])
        elif m.frozen:
            assert isinstance(got, Frozen)
        elif m.available < amount:
            assert got == Insufficient(
                available=m.available, required=amount, shortage=amount - m.available
            )
        elif m.exposure(borrower) + amount > LIMIT:
            assert got == BorrowerLimitExceeded(
                exposure=m.exposure(borrower), required=amount, limit=LIMIT
            )
        else:
            assert isinstance(got, Reserved) and not got.replayed and got.amount == amount
            assert m.available - amount >= 0
            m.active[loan] = Active(borrower, amount, short)
            if short:
                time.sleep(0.004)  # let Redis time pass hold_until before the next step

    @rule(loan=st.sampled_from(LOANS), delta=st.integers(-1, 2))
    def commit(self, loan: str, delta: int) -> None:
        m = self.model
        at = m.ledger + delta
        got = self.run(self.ledger.commit(self.pool, loan, ledger=at))
        if loan in m.active:
            expected = CommitResult(outcome="committed", amount=m.active.pop(loan).amount)
        elif loan in m.terminal and m.terminal[loan][0] == "released":
            expected = CommitResult(outcome="late_commit", amount=m.terminal[loan][1])
        elif loan in m.terminal:
            expected = CommitResult(outcome="already_committed", amount=m.terminal[loan][1])
        else:
            expected = CommitResult(outcome="unknown_loan", amount=0)
        assert got == expected
        if expected.outcome in ("committed", "late_commit"):
            m.terminal[loan] = ("committed", expected.amount)
            if at > m.ledger:
                m.pending[loan] = (at, expected.amount)

    @rule(loan=st.sampled_from(LOANS))
    def release(self, loan: str) -> None:
        m = self.model
        got = self.run(self.ledger.release(self.pool, loan, reason="model"))
        if loan in m.active:
            amount = m.active.pop(loan).amount
            m.terminal[loan] = ("released", amount)
            assert got == ReleaseResult(outcome="released", amount=amount)
        elif loan in m.terminal:
            state, amount = m.terminal[loan]
            assert got == ReleaseResult(outcome=f"already_{state}", amount=amount)
        else:
            assert got == ReleaseResult(outcome="unknown_loan", amount=0)

    @rule()
    def sweep(self) -> None:
        assert sorted(self.run(self.ledger.sweep(self.pool))) == self.model.sweep()

    @rule(delta=st.integers(-2, 3), chain=st.integers(0, 6_000))
    def snapshot(self, delta: int, chain: int) -> None:
        m = self.model
        at = m.ledger + delta
        got = self.run(
            self.ledger.apply_snapshot(self.pool, ledger=at, total=chain, locked=0, available=chain)
        )
        if at < m.ledger:
            assert got == SnapshotResult(outcome="stale", ledger=m.ledger)
            return
        assert got == SnapshotResult(outcome="applied", ledger=at)
        m.ledger, m.chain = at, chain
        m.pending = {k: v for k, v in m.pending.items() if v[0] > at}

    @rule(on=st.booleans())
    def freeze(self, on: bool) -> None:
        if on:
            self.run(self.ledger.freeze(self.pool, reason="model"))
        else:
            self.run(self.ledger.unfreeze(self.pool, reason="model"))
        self.model.frozen = on

    @invariant()
    def agrees_with_model(self) -> None:
        if not hasattr(self, "pool"):
            return
        m = self.model
        s = self.run(self.ledger.status(self.pool))
        assert (s.known, s.frozen, s.snapshot_ledger) == (True, m.frozen, m.ledger)
        assert (s.chain_available, s.pending_commits) == (m.chain, m.pending_total)
        assert (s.reserved, s.available) == (m.reserved, m.available)
        assert s.active_reservations == len(m.active)
        self.run(check(self.redis, self.ledger, self.pool))
        listed = self.run(self.ledger.reservations(self.pool))
        assert {r.loan_id: r.amount for r in listed} == {k: a.amount for k, a in m.active.items()}


def test_ledger_agrees_with_the_model(redis_topology: tuple[str, str]) -> None:
    loop = asyncio.new_event_loop()
    client = client_for(redis_topology)
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    LedgerMachine.loop = loop
    LedgerMachine.redis = client
    LedgerMachine.ledger = Ledger(client, prefix=prefix, safety_buffer=BUFFER)
    try:
        LedgerMachine.TestCase.settings = settings(
            max_examples=100,
            stateful_step_count=30,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        )
        LedgerMachine.TestCase().runTest()
    finally:
        loop.run_until_complete(delete_prefix(client, prefix))
        loop.run_until_complete(client.aclose())
        loop.close()
