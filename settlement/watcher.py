"""Settlement watcher: turns what happens on chain into loan signals (`python watcher.py` runs it).

Two sources, because neither is enough alone:
- getEvents for every configured pool and creditline contract, from a cursor kept in Redis:
  a funding transaction that succeeded emits LOANCRTD / LQFUND, whoever submitted it;
- getTransaction for hashes relayed through the saga (the tx index's watch set): a transaction
  that *failed* emits no event at all.

Delivery is at-least-once: the cursor advances only after a page's signals went out, and every
signal is idempotent in the workflow (the first settlement for the loan's hash wins). After a
funding event the pool's ledger snapshot is refreshed from `get_pool_stats` (never `establish`:
only the reconciler may make an unknown pool known again). RPC or Redis errors back off
exponentially; a restart resumes from the cursor.

The RPC serves only recent history (24 h by default). A watcher that was down for longer resumes
from the oldest ledger the RPC still serves and logs the ledgers it could not read, instead of
asking for them forever. The loans of that gap did not depend on it: each asks the chain
(getTransaction) before it releases at expiry, and the reconciler checks every open reservation's
funding transaction, both long before the RPC forgets it (a hold lasts minutes, the RPC keeps a
day).

`settings.pools` is re-read on every pass, so pools added to a shared Settings at runtime (tests)
are followed from the next pass on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from temporalio.client import Client

from chain.client import ChainClient
from chain.errors import ChainRefusal, ChainUnavailable
from chain.rpc_limits import MAX_EVENT_CONTRACTS
from chain.types import ChainEvent
from core.models import Settled, SettlementFailed
from core.settings import Settings
from core.telemetry.families import (
    WATCHER_LAG,
    WATCHER_LEADER,
    WATCHER_RPC_ERRORS,
    WATCHER_SETTLEMENTS,
)
from core.telemetry.logs import extra
from liquidity.history import LiquidityHistory
from liquidity.lease import Lease
from liquidity.ledger import Ledger
from liquidity.tx_index import TxIndex, TxRef
from workflows.loan_client import (
    LoanClosed,
    LoanNotFound,
    signal_settled,
    signal_settlement_failed,
)

log = logging.getLogger("watcher")

FUNDING_EVENTS = frozenset({"LOANCRTD", "LQFUND"})
PAGE_LIMIT = 100


class SettlementWatcher:
    def __init__(
        self,
        *,
        settings: Settings,
        client: Client,
        chain: ChainClient,
        ledger: Ledger,
        tx_index: TxIndex,
        poll_interval: float = 0.5,
        max_backoff: float = 10.0,
        start_window_ledgers: int = 100,
        lease: Lease | None = None,
        history: LiquidityHistory | None = None,
        history_interval: float = 10.0,
    ) -> None:
        """With a `lease`, only the holder works; without one (tests) this watcher always does.
        With a `history`, the working watcher samples every pool's figures into it (the
        dashboard's chart) every `history_interval` seconds."""
        self._settings = settings
        self._client = client
        self._chain = chain
        self._ledger = ledger
        self._tx_index = tx_index
        self.poll_interval = poll_interval
        self.max_backoff = max_backoff
        self._start_window = start_window_ledgers
        self.signals_sent = 0
        self.ledgers_skipped = 0  # ledgers the RPC no longer served when this watcher got there
        self._dirty: set[str] = set()  # pools whose snapshot must be refreshed
        self._lease = lease
        self._active: bool | None = None
        self._history = history
        self._history_interval = history_interval
        self._sampled_at = 0.0
        for outcome in ("settled", "failed", "late", "unknown"):
            WATCHER_SETTLEMENTS.labels(outcome)  # every outcome exported from the start

    # ---- loop --------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        failures = 0
        try:
            while not stop.is_set():
                try:
                    if await self._holds_lease():
                        await self.step()
                        await self._sample_history()
                    failures = 0
                    delay = self.poll_interval
                except Exception as exc:  # RPC, Redis or Temporal trouble: back off, resume
                    failures += 1
                    if isinstance(exc, ChainUnavailable | ChainRefusal):
                        WATCHER_RPC_ERRORS.inc()
                    delay = min(self.max_backoff, self.poll_interval * 2**failures)
                    log.warning("watcher pass failed (%s); retrying in %.1fs", exc, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay)
        finally:
            if self._lease is not None and self._active:
                with contextlib.suppress(Exception):  # a standby takes over at once
                    await self._lease.release()

    async def _holds_lease(self) -> bool:
        """Renewed before every pass, so a pass never starts without the lease. A holder that
        stalls past the TTL may overlap a successor for one pass: every action is idempotent."""
        if self._lease is None:
            WATCHER_LEADER.set(1)
            return True
        try:
            active = await self._lease.hold()
        except Exception:
            WATCHER_LEADER.set(0)  # cannot tell: no longer working as the leader
            raise
        WATCHER_LEADER.set(1 if active else 0)
        if active != self._active:
            log.info("watcher %s is %s", self._lease.holder, "active" if active else "standing by")
            self._active = active
        return active

    async def step(self) -> None:
        """One pass: drain new contract events, refresh the snapshots of the pools they touched,
        then poll the relayed transactions."""
        pools = dict(self._settings.pools)  # re-read: pools may be added at runtime
        if pools:
            drained = await self._follow_events(pools)
            await self._refresh_dirty(pools, drained)
        await self._poll_watched()

    async def _sample_history(self) -> None:
        """One point per pool for the dashboard's chart, at most every history_interval."""
        if self._history is None:
            return
        now = time.monotonic()
        if now - self._sampled_at < self._history_interval:
            return
        self._sampled_at = now
        for pool_id in sorted(self._settings.pools):
            status = await self._ledger.status(pool_id)
            if status.known:
                await self._history.record(status)

    # ---- events ------------------------------------------------------------------------------

    async def _follow_events(self, pools: dict[str, str]) -> int:
        """Signal every funding event after the stored position; returns the ledger through
        which all events have been handled.

        One getEvents request follows at most MAX_EVENT_CONTRACTS contracts, so the pools are
        split into groups, each drained with its own paging cursor within this pass. What is
        stored is a ledger number, the lowest any group has fully drained: the groups may be
        recomposed when pools are added, and the next pass restarts every group from there
        (re-reading a few events is harmless, every action is idempotent)."""
        handled = await self._tx_index.cursor()
        latest = await self._chain.latest_ledger()
        if handled is None:
            # First start ever: look back a little so a settlement racing our start is not lost.
            start = max(1, latest - self._start_window)
        else:
            start = int(handled) + 1
        WATCHER_LAG.set(max(0, latest - start + 1))  # ledgers this pass has to handle
        if start > latest:
            return latest  # no ledger closed since the last pass
        try:
            drained = await self._drain_groups(pools, start)
        except ChainRefusal:
            oldest, _ = await self._chain.history_window()
            if start >= oldest:
                raise  # refused for another reason: back off and retry, like any RPC trouble
            if handled is not None:  # a first start's look-back is merely shorter
                self._report_gap(start, oldest)
            drained = await self._drain_groups(pools, oldest)
        await self._tx_index.set_cursor(str(drained))
        return drained

    def _report_gap(self, start: int, oldest: int) -> None:
        log.warning(
            "the RPC no longer serves the events of ledgers %d..%d (it keeps %d onwards): "
            "resuming from ledger %d; loans settled in them are found by their own check at "
            "expiry and by the reconciler",
            start,
            oldest - 1,
            oldest,
            oldest,
        )
        self.ledgers_skipped += oldest - start

    async def _drain_groups(self, pools: dict[str, str], start: int) -> int:
        return min([await self._drain(group, pools, start) for group in contract_groups(pools)])

    async def _drain(self, contract_ids: list[str], pools: dict[str, str], start: int) -> int:
        """Every event of these contracts from ledger `start`; returns the ledger drained to."""
        creditline_to_pool = {creditline: pool for pool, creditline in pools.items()}
        cursor: str | None = None
        while True:
            page = await self._chain.events(
                contract_ids,
                start_ledger=None if cursor else start,
                cursor=cursor,
                limit=PAGE_LIMIT,
            )
            settlements: dict[str, ChainEvent] = {}  # first funding event of each transaction
            for event in page.events:
                pool_id = creditline_to_pool.get(event.contract_id, event.contract_id)
                if pool_id in pools:
                    self._dirty.add(pool_id)
                if event.name in FUNDING_EVENTS:
                    settlements.setdefault(event.tx_hash, event)
            await self._settled_events(list(settlements.values()))
            if len(page.events) < PAGE_LIMIT or not page.cursor:
                return page.latest_ledger
            cursor = page.cursor

    async def _refresh_dirty(self, pools: dict[str, str], drained: int) -> None:
        """Apply a fresh snapshot to each pool whose liquidity changed.

        A snapshot at ledger M may only be applied once every saga funding up to M has been
        committed in the ledger; otherwise those amounts count twice (in the chain's figures and
        as active reservations) and the pool refuses loans it can fund. So when the snapshot is
        newer than the events handled so far, drain the events up to it first."""
        for pool_id in sorted(self._dirty):
            if pool_id not in pools:
                self._dirty.discard(pool_id)
                continue
            stats = await self._chain.pool_stats(pool_id)
            if stats.ledger > drained:
                drained = await self._follow_events(pools)
                if stats.ledger > drained:
                    continue  # the RPC is behind its own pool read; next pass
            await self._ledger.apply_snapshot(
                pool_id,
                ledger=stats.ledger,
                total=stats.total_liquidity,
                locked=stats.locked_liquidity,
                available=stats.available_liquidity,
            )
            self._dirty.discard(pool_id)

    async def _settled_events(self, events: list[ChainEvent]) -> None:
        """Map a page's settlements to their loans in one round trip, then commit and signal
        them concurrently: each loan's commit still precedes its own signal, and all of them are
        done before the caller moves the cursor (a failure replays the page; every step is
        idempotent)."""
        refs = await self._tx_index.lookup_many([event.tx_hash for event in events])
        async with asyncio.TaskGroup() as group:
            for event, ref in zip(events, refs, strict=True):
                if ref is None:
                    continue  # not a loan of this saga (or an index entry long expired)
                signal = Settled(
                    tx_hash=event.tx_hash, ledger=event.ledger, chain_loan_id=_chain_loan_id(event)
                )
                group.create_task(self._deliver_settled(ref, signal))

    # ---- polling -----------------------------------------------------------------------------

    async def _poll_watched(self) -> None:
        now = int(time.time())
        for tx_hash, until in await self._tx_index.watched():
            status = await self._chain.transaction(tx_hash)
            if status.status == "not_found":
                if now > until:
                    await self._tx_index.unwatch(tx_hash)
                continue
            ref = await self._tx_index.lookup(tx_hash)
            if ref is None:
                await self._tx_index.unwatch(tx_hash)
                continue
            if status.status == "success":
                await self._deliver_settled(
                    ref,
                    Settled(
                        tx_hash=tx_hash,
                        ledger=status.ledger or 0,
                        chain_loan_id=status.chain_loan_id,
                    ),
                )
                self._dirty.add(ref.pool_id)  # refreshed after the next event drain
            else:
                WATCHER_SETTLEMENTS.labels("failed").inc()
                log.info(
                    "funding transaction of loan %s failed on chain: %s",
                    ref.loan_id,
                    status.reason,
                    extra=extra(loan_id=ref.loan_id, pool_id=ref.pool_id, tx_hash=tx_hash),
                )
                failed = SettlementFailed(
                    tx_hash=tx_hash,
                    ledger=status.ledger,
                    reason=str(status.reason or "unknown"),
                    detail=status.detail,
                )
                try:
                    await signal_settlement_failed(self._client, ref.loan_id, failed)
                    self.signals_sent += 1
                except (LoanClosed, LoanNotFound):
                    pass  # the loan already ended; a failed transaction changed nothing on chain
            await self._tx_index.unwatch(tx_hash)

    # ---- effects -----------------------------------------------------------------------------

    async def _deliver_settled(self, ref: TxRef, signal: Settled) -> None:
        """Commit in the ledger, then signal the workflow.

        The chain is the truth, so the reservation is consumed here, before any snapshot taken
        after this settlement is applied: otherwise the funded amount would be counted twice
        (in the chain's figures and as a still-active reservation) until the workflow commits,
        and under load that refuses loans the pool can fund. The workflow's own commit is then
        an idempotent `already_committed`. A loan whose workflow already ended (expired while
        this watcher was down) gets a `late_commit`, which alarms in the audit stream."""
        result = await self._ledger.commit(ref.pool_id, ref.loan_id, ledger=signal.ledger)
        ids = extra(loan_id=ref.loan_id, pool_id=ref.pool_id, tx_hash=signal.tx_hash)
        if result.outcome in ("committed", "already_committed"):
            log.info(
                "loan %s settled in ledger %d (%s)",
                ref.loan_id,
                signal.ledger,
                result.outcome,
                extra=ids,
            )
            if result.outcome == "committed":
                WATCHER_SETTLEMENTS.labels("settled").inc()
        else:
            log.warning(
                "settlement of loan %s: ledger says %s", ref.loan_id, result.outcome, extra=ids
            )
            WATCHER_SETTLEMENTS.labels(
                "late" if result.outcome == "late_commit" else "unknown"
            ).inc()
        try:
            await signal_settled(self._client, ref.loan_id, signal)
            self.signals_sent += 1
        except (LoanClosed, LoanNotFound):
            pass  # the workflow is gone; the ledger already has the truth


def contract_groups(pools: dict[str, str]) -> list[list[str]]:
    """The pools' contracts (pool and creditline kept together) in groups small enough for one
    getEvents request."""
    per_group = MAX_EVENT_CONTRACTS // 2
    ordered = sorted(pools.items())
    return [
        sorted(contract for pair in ordered[i : i + per_group] for contract in pair)
        for i in range(0, len(ordered), per_group)
    ]


def _chain_loan_id(event: ChainEvent) -> int | None:
    """LOANCRTD carries the creditline's loan id first in its data; other events carry none."""
    if event.name != "LOANCRTD":
        return None
    data: Any = event.data
    if isinstance(data, dict):
        data = data.get("loan_id")
    elif isinstance(data, list | tuple) and data:
        data = data[0]
    return data if isinstance(data, int) and not isinstance(data, bool) else None
