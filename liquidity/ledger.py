"""The reservation ledger: a typed async facade over one Lua script per operation.

Redis is the admission gate, not the source of truth: each operation is atomic (one script, one
round trip), idempotent by loan id, and reads "now" from Redis TIME so workers' clocks never
matter. This module knows nothing of Temporal or HTTP."""

from __future__ import annotations

from typing import Any

from liquidity import decode
from liquidity.connection import RedisClient
from liquidity.keys import PoolKeys, pool_keys
from liquidity.lua import Script, Scripts
from liquidity.types import (
    AuditEntry,
    BlockedEntry,
    CommitResult,
    PoolStatus,
    ReleaseResult,
    Reservation,
    ReserveResult,
    RestoreResult,
    SnapshotResult,
    UnknownPool,
)

# Redis counters are signed 64-bit. Capping every input here keeps sums of many amounts far from
# overflow, so a script can never fail half-way through its writes (Lua scripts do not roll back).
MAX_AMOUNT = 2**62


def _amount(name: str, value: int, *, allow_zero: bool = False) -> str:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int number of stroops, got {type(value).__name__}")
    low = 0 if allow_zero else 1
    if not low <= value <= MAX_AMOUNT:
        raise ValueError(f"{name} must be in [{low}, 2**62], got {value}")
    return str(value)


def _nonneg(name: str, value: int) -> str:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    return str(value)


def _reason(value: str) -> str:
    """Free text travels inside the NUL-separated argument string, so NUL is dropped."""
    return str(value).replace("\0", "")


def _text(name: str, value: str) -> str:
    if not isinstance(value, str) or not value or "\0" in value:
        raise ValueError(f"{name} must be a non-empty string without NUL characters")
    return value


class LedgerNotReplicated(Exception):
    """A mutation ran on the primary but fewer than REDIS_MIN_REPLICAS replicas acknowledged it
    within the timeout. Raised by commit/release/restore/... (idempotent: the caller retries);
    reserve instead releases the grant and answers UnknownPool(reason="not_replicated")."""


class LedgerFailover(Exception):
    """The primary changed (replication id) while a pool was being established: the restore
    that preceded it may be lost. The pool stays unknown; run the reconciliation again."""


def _replid(info: Any) -> str:
    """master_replid from INFO replication (a dict when redis-py parsed it, else text)."""
    if isinstance(info, dict):
        return str(info.get("master_replid", ""))
    for line in str(info).splitlines():
        if line.startswith("master_replid:"):
            return line.split(":", 1)[1].strip()
    return ""


class Ledger:
    def __init__(
        self,
        redis: RedisClient,
        *,
        prefix: str = "liq",
        safety_buffer: int = 0,
        terminal_retention_ms: int = 7 * 24 * 3600 * 1000,
        min_replicas: int = 0,
        replica_timeout_ms: int = 1000,
        failover_check: bool = False,
    ) -> None:
        """`redis` must use decode_responses=True (as everywhere in the project).

        `min_replicas` > 0: every mutation is followed by WAIT on the same connection; a grant
        not acknowledged by that many replicas within `replica_timeout_ms` is released and never
        offered, any other unacknowledged mutation raises LedgerNotReplicated (retry it).
        `failover_check` (for a Sentinel primary without replica acks): each pool records the
        primary's replication id when it is established; a reserve on a primary with another id
        makes the pool unknown (fail closed) until the reconciler restored every open loan."""
        self._redis = redis
        self._prefix = prefix
        self._buffer = int(_amount("safety_buffer", safety_buffer, allow_zero=True))
        self._retention = _nonneg("terminal_retention_ms", terminal_retention_ms)
        self._scripts = Scripts(redis)
        self._keys: dict[str, list[bytes]] = {}
        if min_replicas < 0 or replica_timeout_ms <= 0:
            raise ValueError("min_replicas must be >= 0 and replica_timeout_ms > 0")
        self._replicas = min_replicas
        self._ack_ms = replica_timeout_ms
        self._check = failover_check
        self._epoch: str | None = None  # the replication id of the primary last seen

    # ---- durability --------------------------------------------------------------------------

    async def epoch(self) -> str:
        """The serving primary's replication id ('' when failover_check is off)."""
        if not self._check:
            return ""
        info = await self._redis.info("replication")
        self._epoch = _replid(info)
        return self._epoch

    async def _run(self, script: Script, keys: list[bytes], args: list[Any]) -> tuple[Any, bool]:
        """(reply, acknowledged by enough replicas)."""
        if self._replicas == 0:
            return await script(keys, args), True
        reply, acked = await script.call_then(keys, args, ("WAIT", self._replicas, self._ack_ms))
        return reply, int(acked) >= self._replicas

    async def _mutate(self, script: Script, keys: list[bytes], args: list[Any]) -> Any:
        reply, acked = await self._run(script, keys, args)
        if not acked:
            raise LedgerNotReplicated(
                f"not acknowledged by {self._replicas} replica(s) within {self._ack_ms} ms"
            )
        return reply

    async def lost_writes_suspected(self, pool_id: str) -> bool:
        """failover_check: True (and the pool made unknown) when the known pool was established
        under another primary than the one serving now. Always False when the check is off."""
        if not self._check:
            return False
        recorded: Any = await self._redis.hget(self.keys(pool_id).state, "replid")
        current = await self.epoch()
        if recorded == current:
            return False
        await self._mutate(
            self._scripts.suspect, self._k(pool_id), [current, "replication id changed"]
        )
        return True

    def keys(self, pool_id: str) -> PoolKeys:
        """The pool's Redis keys (for operators and white-box invariant checks in tests)."""
        return pool_keys(self._prefix, pool_id)

    def _k(self, pool_id: str) -> list[bytes]:
        """Cached and pre-encoded: packing the command's arguments is the client's hot spot."""
        keys = self._keys.get(pool_id)
        if keys is None:
            keys = self._keys[pool_id] = [k.encode() for k in self.keys(pool_id).ordered()]
        return keys

    async def reserve(
        self,
        pool_id: str,
        loan_id: str,
        borrower: str,
        amount: int,
        *,
        ttl_ms: int,
        grace_ms: int = 0,
        borrower_limit: int,
    ) -> ReserveResult:
        """expires_at_ms = Redis now + ttl_ms (the funding transaction's max_time); the amount
        stays counted until hold_until_ms = expires_at_ms + grace_ms. A repeat while active
        returns the original reservation (first wins, replayed=True)."""
        amt = _amount("amount", amount)
        limit = int(_amount("borrower_limit", borrower_limit, allow_zero=True))
        if ttl_ms <= 0:
            raise ValueError("ttl_ms must be positive")
        keys = self._k(pool_id)
        args: list[Any] = [
            _text("loan_id", loan_id),
            _text("borrower", borrower),
            amt,
            ttl_ms,
            _nonneg("grace_ms", grace_ms),
            amount + self._buffer,
            limit - amount,
            self._retention,
        ]
        if self._check:
            reply = await self._reserve_checked(keys, args)
        else:
            reply, acked = await self._run(self._scripts.reserve, keys, args)
            if not acked and reply.startswith("reserved|"):
                # Never offer a grant a failover could lose: give it back (best effort; if this
                # release is lost too, the reconciler releases the refused loan's orphan).
                await self._run(
                    self._scripts.release,
                    keys,
                    [loan_id, "not replica-acknowledged", self._retention],
                )
                return UnknownPool(reason="not_replicated")
        return decode.reserve_result(
            reply, loan_id=loan_id, amount=amount, buffer=self._buffer, limit=limit
        )

    async def _reserve_checked(self, keys: list[bytes], args: list[Any]) -> Any:
        """The script compares the pool's recorded replication id with the one we pass; INFO on
        the same connection then says which primary really ran it. If that is not the one we
        passed, the grant may come from a state missing writes: run again with the real id, which
        makes the pool unknown (the first grant, never offered, is a refused loan's orphan)."""
        epoch = self._epoch if self._epoch is not None else await self.epoch()
        reply, info = await self._scripts.reserve.call_then(
            keys, [*args, epoch], ("INFO", "replication")
        )
        server = _replid(info)
        if server != epoch:
            self._epoch = server
            reply = await self._scripts.reserve(keys, [*args, server])
        return reply

    async def commit(self, pool_id: str, loan_id: str, *, ledger: int) -> CommitResult:
        """The chain settled the loan at `ledger`; counted as a pending commit until a snapshot
        at or after that ledger arrives (never twice, never zero times)."""
        reply = await self._mutate(
            self._scripts.commit,
            self._k(pool_id),
            [_text("loan_id", loan_id), _nonneg("ledger", ledger), self._retention],
        )
        return decode.commit_result(reply)

    async def release(self, pool_id: str, loan_id: str, *, reason: str) -> ReleaseResult:
        reply = await self._mutate(
            self._scripts.release,
            self._k(pool_id),
            [_text("loan_id", loan_id), _reason(reason), self._retention],
        )
        return decode.release_result(reply)

    async def sweep(self, pool_id: str) -> list[str]:
        """Releases every reservation whose hold has passed; loops over bounded script calls so
        no single call blocks Redis for long."""
        released: list[str] = []
        while True:
            batch, more = await self._mutate(
                self._scripts.sweep, self._k(pool_id), [self._retention]
            )
            released.extend(batch)
            if not more:
                return released

    async def apply_snapshot(
        self,
        pool_id: str,
        *,
        ledger: int,
        total: int,
        locked: int,
        available: int,
        establish: bool = False,
        epoch: str | None = None,
    ) -> SnapshotResult:
        """Chain figures at `ledger`. Only the reconciler (after restoring every open loan) and the
        bootstrap pass establish=True: that is what makes a lost pool known again.

        failover_check: an established pool records `epoch`, the primary's replication id the
        caller saw *before* restoring (default: now). If the primary that ran the snapshot has
        another id, the restore may be lost: the pool is made unknown again, LedgerFailover."""
        keys = self._k(pool_id)
        args: list[Any] = [
            _nonneg("ledger", ledger),
            _amount("total", total, allow_zero=True),
            _amount("locked", locked, allow_zero=True),
            _amount("available", available, allow_zero=True),
            "1" if establish else "0",
        ]
        if not (self._check and establish):
            reply = await self._mutate(self._scripts.snapshot, keys, args)
            return SnapshotResult(outcome=reply[0], ledger=int(reply[1]))
        expected = epoch if epoch is not None else await self.epoch()
        reply, info = await self._scripts.snapshot.call_then(
            keys, [*args, expected], ("INFO", "replication")
        )
        server = _replid(info)
        if server != expected:
            self._epoch = server
            await self._scripts.suspect(keys, [server, "failover while establishing"])
            raise LedgerFailover(f"pool {pool_id}: the primary changed while it was established")
        return SnapshotResult(outcome=reply[0], ledger=int(reply[1]))

    async def restore(
        self,
        pool_id: str,
        loan_id: str,
        *,
        borrower: str,
        amount: int,
        expires_at_ms: int,
        hold_until_ms: int,
    ) -> RestoreResult:
        """Re-asserts an open loan's reservation; never refuses, also on an unknown pool."""
        if hold_until_ms < expires_at_ms:
            raise ValueError("hold_until_ms must not precede expires_at_ms")
        reply = await self._mutate(
            self._scripts.restore,
            self._k(pool_id),
            [
                _text("loan_id", loan_id),
                _text("borrower", borrower),
                _amount("amount", amount),
                _nonneg("expires_at_ms", expires_at_ms),
                _nonneg("hold_until_ms", hold_until_ms),
            ],
        )
        return decode.restore_result(reply, buffer=self._buffer)

    async def freeze(self, pool_id: str, *, reason: str) -> None:
        """A frozen pool refuses new reservations; commits and releases still go through."""
        await self._mutate(self._scripts.freeze, self._k(pool_id), ["1", _reason(reason)])

    async def unfreeze(self, pool_id: str, *, reason: str) -> None:
        await self._mutate(self._scripts.freeze, self._k(pool_id), ["0", _reason(reason)])

    async def status(self, pool_id: str) -> PoolStatus:
        reply = await self._scripts.status(self._k(pool_id), [])
        return decode.pool_status(pool_id, reply, buffer=self._buffer)

    async def reservations(self, pool_id: str, *, limit: int = 1000) -> list[Reservation]:
        """Active reservations, soonest hold end first (includes expired-but-unswept ones)."""
        if limit <= 0:
            return []
        reply = await self._scripts.reservations(self._k(pool_id), [limit])
        return [decode.reservation(reply[i], reply[i + 1]) for i in range(0, len(reply), 2)]

    async def reservation(self, pool_id: str, loan_id: str) -> Reservation | None:
        record: Any = await self._redis.hget(self.keys(pool_id).res, loan_id)
        return None if record is None else decode.reservation(loan_id, record)

    async def audit(
        self, pool_id: str, *, count: int = 100, before: str | None = None
    ) -> list[AuditEntry]:
        """Newest first; pass the last id seen as `before` to page further back."""
        entries = await self._newest(self.keys(pool_id).audit, count, before)
        return [decode.audit_entry(entry_id, fields) for entry_id, fields in entries]

    async def blocked(
        self, pool_id: str, *, count: int = 100, before: str | None = None
    ) -> list[BlockedEntry]:
        """Refused reservations, newest first."""
        entries = await self._newest(self.keys(pool_id).blocked, count, before)
        return [decode.blocked_entry(entry_id, fields) for entry_id, fields in entries]

    async def _newest(
        self, stream: str, count: int, before: str | None
    ) -> list[tuple[str, dict[str, str]]]:
        """XREVRANGE newest first; `before` is exclusive so pages never repeat an entry.
        Raises ValueError for a `before` that is not a Redis stream id ("ms" or "ms-seq", each a
        64-bit unsigned integer)."""
        if before is not None:
            parts = before.split("-")
            if not 1 <= len(parts) <= 2 or not all(p.isdigit() and int(p) < 2**64 for p in parts):
                raise ValueError(f"not a stream id: {before!r}")
            if all(int(p) == 0 for p in parts):
                return []  # nothing is older than the first possible id
        entries: Any = await self._redis.xrevrange(
            stream, max=f"({before}" if before else "+", min="-", count=count
        )
        return list(entries or [])
