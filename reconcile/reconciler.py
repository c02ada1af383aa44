"""The reconciler's domain logic: bring one pool's reservation ledger back in line with the chain.

Redis is the admission gate, the chain is the truth and every open loan workflow knows its own
reservation. A run per pool, every step idempotent (running it twice repairs nothing twice):

1. read `get_pool_stats` at ledger N; if the pool is *unknown* (its ledger keys are gone) first
   re-assert every open loan's reservation (`restore`), then establish the pool with the snapshot;
   otherwise apply the snapshot;
2. sweep expired reservations;
3. per active reservation ask the loan directory about its loan: closed or missing -> the
   reservation is an orphan and is released (committed instead if its funding landed); open and
   its funding transaction already succeeded on chain (the watcher missed it) -> commit, and tell
   the loan so it reaches its terminal state too;
4. explain the change of `locked_liquidity` (and `total_liquidity`) since the previous run's
   ledger with the chain events in between; what no event explains is drift, and drift above
   the threshold freezes the pool until an admin unfreezes it;
5. keep the report (it carries the next run's baseline).

Plain async Python: the loan directory is a Protocol the Temporal activity implements, so this
module knows nothing of Temporal or HTTP.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Protocol

from pydantic import BaseModel, Field, computed_field

from chain.client import ChainClient
from chain.types import ChainEvent, PoolStats
from core.models import LoanState
from liquidity.keys import pool_keys
from liquidity.ledger import Ledger
from liquidity.tx_index import TxIndex, TxRef

# States in which a loan workflow holds a reservation the chain may still consume.
HOLDING_STATES = frozenset({LoanState.RESERVED, LoanState.SUBMITTED})
EVENT_PAGE = 1000
CHECK_CONCURRENCY = 8  # per pool; pools run concurrently and share one Redis pool (100)


class LoanInfo(BaseModel):
    """What the reconciler needs to know about one loan, as its workflow sees it."""

    loan_id: str
    open: bool  # the workflow is running
    state: LoanState | None = None  # None when the workflow could not be asked
    borrower: str | None = None
    amount: int = 0  # the reserved (pool-funded) amount
    expires_at: int | None = None  # Unix seconds: the funding transaction's max_time
    tx_hash: str | None = None


class LoanDirectory(Protocol):
    """Where loans live (Temporal, in production: workflows/loan_directory.py)."""

    async def lookup(self, loan_id: str) -> LoanInfo | None:
        """None when no loan workflow with this id exists."""
        ...

    async def open_loans(self, pool_id: str) -> list[LoanInfo]:
        """Every running loan workflow of the pool."""
        ...

    async def tell_settled(self, loan_id: str, tx_hash: str, ledger: int) -> None:
        """Tell the loan its funding settled at `ledger` (idempotent; a closed loan is fine)."""
        ...


class ChainFigures(BaseModel):
    ledger: int
    total: int
    locked: int
    available: int

    @classmethod
    def of(cls, stats: PoolStats) -> ChainFigures:
        return cls(
            ledger=stats.ledger,
            total=stats.total_liquidity,
            locked=stats.locked_liquidity,
            available=stats.available_liquidity,
        )


class Funding(BaseModel):
    """One pool funding (LQFUND) seen on chain between two runs."""

    tx_hash: str
    ledger: int
    amount: int
    loan_id: str | None = None  # ours: the saga loan the transaction belongs to


class Explanation(BaseModel):
    """How the chain figures moved between the previous run's ledger and this one's."""

    from_ledger: int  # previous run's snapshot ledger (exclusive)
    to_ledger: int  # this run's snapshot ledger (inclusive)
    events_complete: bool  # False: part of the gap is older than the RPC keeps events
    locked_delta: int
    total_delta: int
    funded_ours: int
    funded_external: int
    repaid: int  # principal given back (locked decreases)
    interest: int  # interest received (total increases)
    deposited: int
    withdrawn: int
    ours: list[Funding] = Field(default_factory=list)
    external: list[Funding] = Field(default_factory=list)  # loans created around the API
    unexplained_locked: int  # locked change no event accounts for
    unexplained_total: int  # total change no event accounts for

    @property
    def drift(self) -> int:
        return abs(self.unexplained_locked) + abs(self.unexplained_total)


class PoolReport(BaseModel):
    """One pool's reconciliation: what was found, what was repaired, what the chain says now."""

    pool_id: str
    run_id: str = ""
    at_ms: int
    chain: ChainFigures
    previous_ledger: int | None  # None: no baseline (first run, or Redis lost the last report)
    established: bool = False  # the pool was unknown; the ledger was rebuilt from the loans
    restored: list[str] = Field(default_factory=list)
    swept: list[str] = Field(default_factory=list)
    orphans_released: list[str] = Field(default_factory=list)
    orphans_committed: list[str] = Field(default_factory=list)  # closed loan, funding landed
    committed: list[str] = Field(default_factory=list)  # open loan settled, watcher missed it
    undetermined: list[str] = Field(default_factory=list)  # open loan that could not be asked
    explanation: Explanation | None = None
    reserved: int
    active_reservations: int
    overcommit: int  # reservations beyond what the chain has available: new loans refused
    frozen: bool
    froze: bool = False  # this run froze the pool for unexplained drift
    frozen_reason: str | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def counts(self) -> dict[str, int]:
        return {
            "restored": len(self.restored),
            "swept": len(self.swept),
            "orphans_released": len(self.orphans_released),
            "orphans_committed": len(self.orphans_committed),
            "committed": len(self.committed),
            "undetermined": len(self.undetermined),
            "external_loans": len(self.explanation.external) if self.explanation else 0,
        }


class ReportStore:
    """The latest report per pool, next to the pool's ledger keys (same prefix and hash tag)."""

    def __init__(self, redis: Any, *, prefix: str = "liq") -> None:
        self._redis = redis
        self._prefix = prefix

    def key(self, pool_id: str) -> str:
        return pool_keys(self._prefix, pool_id).recon

    async def latest(self, pool_id: str) -> PoolReport | None:
        raw = await self._redis.get(self.key(pool_id))
        return PoolReport.model_validate_json(raw) if raw else None

    async def save(self, report: PoolReport) -> None:
        await self._redis.set(self.key(report.pool_id), report.model_dump_json())


def _ints(data: Any) -> list[int]:
    """The integer fields of an event body (a vec), in order; addresses and the rest skipped."""
    items = data if isinstance(data, list) else [data]
    return [v for v in items if isinstance(v, int) and not isinstance(v, bool)]


async def establish_pool(ledger: Ledger, chain: ChainClient, pool_id: str) -> PoolStats:
    """Make a freshly deployed pool known to the ledger from a chain snapshot.

    Only for a pool with no open loans (bootstrap, tests, benchmarks): a pool that *lost* its keys
    goes through Reconciler.reconcile, which restores every open loan before establishing."""
    stats = await chain.pool_stats(pool_id)
    await ledger.apply_snapshot(
        pool_id,
        ledger=stats.ledger,
        total=stats.total_liquidity,
        locked=stats.locked_liquidity,
        available=stats.available_liquidity,
        establish=True,
    )
    return stats


class Reconciler:
    def __init__(
        self,
        *,
        ledger: Ledger,
        chain: ChainClient,
        tx_index: TxIndex,
        directory: LoanDirectory,
        reports: ReportStore,
        grace_ms: int,
        freeze_threshold: int,
        event_window_ledgers: int,
        clock: Callable[[], float] = time.time,
        progress: Callable[[], None] | None = None,
    ) -> None:
        """`progress` is called after every loan restored and every reservation checked: a run's
        length grows with the pool's open loans, so its caller can tell "still working" (a
        heartbeat) from "stuck" without a deadline fixed for the largest pool."""
        self._ledger = ledger
        self._chain = chain
        self._tx_index = tx_index
        self._directory = directory
        self._reports = reports
        self._grace_ms = grace_ms
        self._threshold = freeze_threshold
        self._window = max(1, event_window_ledgers)
        self._clock = clock
        self._progress = progress or (lambda: None)

    async def reconcile(self, pool_id: str, creditline_id: str, *, run_id: str = "") -> PoolReport:
        previous = await self._reports.latest(pool_id)
        before = await self._ledger.status(pool_id)
        stats = await self._chain.pool_stats(pool_id)
        figures = ChainFigures.of(stats)
        report = PoolReport(
            pool_id=pool_id,
            run_id=run_id,
            at_ms=int(self._clock() * 1000),
            chain=figures,
            previous_ledger=previous.chain.ledger if previous else None,
            reserved=0,
            active_reservations=0,
            overcommit=0,
            frozen=False,
        )
        known = before.known and not await self._ledger.lost_writes_suspected(pool_id)
        if known:
            await self._apply(pool_id, figures, establish=False)
        else:
            report.established = True
            # The primary's replication id before the restore: if another primary takes over
            # before the pool is established, establishing fails and the pool stays unknown.
            epoch = await self._ledger.epoch()
            report.restored = await self._restore(pool_id)
            await self._apply(pool_id, figures, establish=True, epoch=epoch)
        report.swept = await self._ledger.sweep(pool_id)
        await self._check_reservations(pool_id, report)
        if previous is not None and previous.chain.ledger <= figures.ledger:
            report.explanation = await self._explain(
                pool_id, creditline_id, previous.chain, figures
            )
        await self._judge(pool_id, report)
        await self._reports.save(report)
        return report

    # ---- steps -------------------------------------------------------------------------------

    async def _apply(
        self, pool_id: str, f: ChainFigures, *, establish: bool, epoch: str | None = None
    ) -> None:
        await self._ledger.apply_snapshot(
            pool_id,
            ledger=f.ledger,
            total=f.total,
            locked=f.locked,
            available=f.available,
            establish=establish,
            epoch=epoch,
        )

    async def _restore(self, pool_id: str) -> list[str]:
        """Re-assert what every open loan holds. The transaction's max_time is whole seconds, so
        the hold is rounded *up* to the end of that second: restoring errs on holding longer."""
        restored: list[str] = []
        for loan in await self._directory.open_loans(pool_id):
            if loan.state not in HOLDING_STATES or loan.expires_at is None or not loan.borrower:
                continue
            if loan.amount <= 0:
                continue
            await self._remap(pool_id, loan)
            expires_ms = loan.expires_at * 1000 + 999
            result = await self._ledger.restore(
                pool_id,
                loan.loan_id,
                borrower=loan.borrower,
                amount=loan.amount,
                expires_at_ms=expires_ms,
                hold_until_ms=expires_ms + self._grace_ms,
            )
            if result.outcome == "restored":
                restored.append(loan.loan_id)
            self._progress()
        return restored

    async def _check_reservations(self, pool_id: str, report: PoolReport) -> None:
        """Each reservation is checked on its own (every repair is one idempotent ledger call),
        a bounded number at a time so a pool with many open loans does not take minutes."""
        gate = asyncio.Semaphore(CHECK_CONCURRENCY)

        async def check(loan_id: str) -> None:
            async with gate:
                await self._check_one(pool_id, loan_id, report)
            self._progress()

        reservations = await self._ledger.reservations(pool_id, limit=10_000)
        await asyncio.gather(*(check(r.loan_id) for r in reservations))
        for found in (
            report.orphans_released,
            report.orphans_committed,
            report.committed,
            report.undetermined,
        ):
            found.sort()

    async def _check_one(self, pool_id: str, loan_id: str, report: PoolReport) -> None:
        info = await self._directory.lookup(loan_id)
        landed = await self._landed(info)
        if info is None or not info.open:
            if landed is not None:
                await self._ledger.commit(pool_id, loan_id, ledger=landed)
                report.orphans_committed.append(loan_id)
                return
            reason = "orphan: loan workflow closed" if info else "orphan: no loan workflow"
            released = await self._ledger.release(pool_id, loan_id, reason=reason)
            if released.outcome == "released":
                report.orphans_released.append(loan_id)
        elif landed is not None:
            assert info.tx_hash is not None
            await self._remap(pool_id, info)
            committed = await self._ledger.commit(pool_id, loan_id, ledger=landed)
            await self._directory.tell_settled(loan_id, info.tx_hash, landed)
            if committed.outcome == "committed":
                report.committed.append(loan_id)
        elif info.state is None:
            report.undetermined.append(loan_id)
        else:
            await self._remap(pool_id, info)

    async def _remap(self, pool_id: str, loan: LoanInfo) -> None:
        """The loan's funding hash -> the loan, in case Redis lost it with the reservation: else
        the watcher could not tell the loan its funding settled, and the explanation would count
        the project's own funding as external."""
        if loan.tx_hash and loan.expires_at is not None:
            await self._tx_index.remap(
                TxRef(
                    tx_hash=loan.tx_hash,
                    loan_id=loan.loan_id,
                    pool_id=pool_id,
                    expires_at=loan.expires_at,
                )
            )

    async def _landed(self, info: LoanInfo | None) -> int | None:
        """The ledger the loan's funding transaction succeeded in, if it did."""
        if info is None or info.tx_hash is None:
            return None
        status = await self._chain.transaction(info.tx_hash)
        return status.ledger if status.status == "success" else None

    async def _events(self, contract_ids: list[str], start: int, end: int) -> list[ChainEvent]:
        found: list[ChainEvent] = []
        cursor: str | None = None
        while True:
            page = await self._chain.events(
                contract_ids,
                start_ledger=None if cursor else start,
                cursor=cursor,
                limit=EVENT_PAGE,
            )
            found.extend(e for e in page.events if e.ledger <= end)
            past_end = any(e.ledger > end for e in page.events)
            if past_end or len(page.events) < EVENT_PAGE or not page.cursor:
                return found
            cursor = page.cursor

    async def _explain(
        self, pool_id: str, creditline_id: str, prev: ChainFigures, now: ChainFigures
    ) -> Explanation:
        start = prev.ledger + 1
        complete = now.ledger - prev.ledger <= self._window
        if not complete:
            start = now.ledger - self._window + 1
        events = (
            await self._events([pool_id, creditline_id], start, now.ledger)
            if (start <= now.ledger)
            else []
        )
        ours: list[Funding] = []
        external: list[Funding] = []
        repaid = interest = deposited = withdrawn = 0
        for event in events:
            if event.contract_id != pool_id:
                continue  # creditline events (LOANCRTD, LOANRPD) repeat what the pool says
            ints = _ints(event.data)
            if event.name == "LQFUND" and ints:
                ref = await self._tx_index.lookup(event.tx_hash)
                funding = Funding(
                    tx_hash=event.tx_hash,
                    ledger=event.ledger,
                    amount=ints[0],
                    loan_id=ref.loan_id if ref and ref.pool_id == pool_id else None,
                )
                (ours if funding.loan_id else external).append(funding)
            elif event.name == "LQREPAY" and len(ints) >= 2:
                repaid += ints[0]
                interest += ints[1]
            elif event.name == "LQDEPST" and ints:
                deposited += ints[0]
            elif event.name == "LQWTHDR" and len(ints) >= 2:
                withdrawn += ints[1]
        funded_ours = sum(f.amount for f in ours)
        funded_external = sum(f.amount for f in external)
        locked_delta = now.locked - prev.locked
        total_delta = now.total - prev.total
        return Explanation(
            from_ledger=prev.ledger,
            to_ledger=now.ledger,
            events_complete=complete,
            locked_delta=locked_delta,
            total_delta=total_delta,
            funded_ours=funded_ours,
            funded_external=funded_external,
            repaid=repaid,
            interest=interest,
            deposited=deposited,
            withdrawn=withdrawn,
            ours=ours,
            external=external,
            unexplained_locked=locked_delta - (funded_ours + funded_external - repaid),
            unexplained_total=total_delta - (deposited - withdrawn + interest),
        )

    async def _judge(self, pool_id: str, report: PoolReport) -> None:
        """Freeze on drift above the threshold; report the pool as it stands after the repairs."""
        drift = report.explanation.drift if report.explanation else 0
        if drift > self._threshold:
            status = await self._ledger.status(pool_id)
            if not status.frozen:
                exp = report.explanation
                assert exp is not None
                await self._ledger.freeze(
                    pool_id,
                    reason=(
                        f"reconciler: unexplained drift between ledgers {exp.from_ledger} and "
                        f"{exp.to_ledger} (locked {exp.unexplained_locked}, total "
                        f"{exp.unexplained_total} stroops)"
                    ),
                )
                report.froze = True
        status = await self._ledger.status(pool_id)
        report.reserved = status.reserved
        report.active_reservations = status.active_reservations
        report.overcommit = status.overcommit
        report.frozen = status.frozen
        report.frozen_reason = status.frozen_reason
