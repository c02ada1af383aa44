"""Typed results of the reservation ledger. Plain pydantic: no Temporal, no HTTP.

Amounts are integer stroops; times are milliseconds since the Unix epoch taken from Redis TIME."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel


class Reserved(BaseModel):
    kind: Literal["reserved"] = "reserved"
    loan_id: str
    amount: int
    expires_at_ms: int  # the funding transaction's max_time (ms): it cannot land after this
    hold_until_ms: int  # expires_at_ms + grace: counted until then, so a transaction that landed
    # in the last ledger before expiry is committed before its funds can be granted again
    fence: int  # monotonically increasing per pool; a repeated reserve returns the original
    replayed: bool = False  # True when this loan id was already reserved (idempotent repeat)


class Insufficient(BaseModel):
    kind: Literal["insufficient"] = "insufficient"
    available: int
    required: int
    shortage: int


class Frozen(BaseModel):
    kind: Literal["frozen"] = "frozen"
    reason: str


class UnknownPool(BaseModel):
    """The pool's ledger keys are missing (never initialised, or Redis lost them): fail closed."""

    kind: Literal["unknown_pool"] = "unknown_pool"
    # "" (keys missing / never established), "failover" (the primary changed without replica
    # acks: writes may be lost), "not_replicated" (the grant was not acknowledged by
    # REDIS_MIN_REPLICAS replicas in time and was released).
    reason: str = ""


class BorrowerLimitExceeded(BaseModel):
    kind: Literal["borrower_limit_exceeded"] = "borrower_limit_exceeded"
    exposure: int  # the borrower's active reservations in the pool before this one
    required: int
    limit: int


class AlreadyTerminal(BaseModel):
    """reserve() of a loan id whose reservation was already committed or released."""

    kind: Literal["already_terminal"] = "already_terminal"
    state: Literal["committed", "released"]


ReserveResult = (
    Reserved | Insufficient | Frozen | UnknownPool | BorrowerLimitExceeded | AlreadyTerminal
)


CommitOutcome = Literal["committed", "already_committed", "late_commit", "unknown_loan"]


class CommitResult(BaseModel):
    """`late_commit`: the reservation had been released (or expired) when the chain settled; the
    chain is the truth, so the amount is counted as a pending commit and the audit entry alarms."""

    outcome: CommitOutcome
    amount: int


ReleaseOutcome = Literal["released", "already_released", "already_committed", "unknown_loan"]


class ReleaseResult(BaseModel):
    outcome: ReleaseOutcome
    amount: int


class RestoreResult(BaseModel):
    """restore() never refuses; `overcommit` > 0 flags reservations beyond chain availability."""

    outcome: Literal["restored", "already_active", "already_terminal"]
    overcommit: int


class SnapshotResult(BaseModel):
    outcome: Literal["applied", "stale", "unknown_pool"]
    ledger: int  # the snapshot ledger held after the call


class Reservation(BaseModel):
    loan_id: str
    borrower: str
    amount: int
    expires_at_ms: int
    hold_until_ms: int
    fence: int
    created_at_ms: int


class PoolStatus(BaseModel):
    pool_id: str
    known: bool
    frozen: bool
    frozen_reason: str | None
    snapshot_ledger: int
    total: int
    locked: int
    chain_available: int  # available_liquidity of the latest chain snapshot
    pending_commits: int  # committed after the snapshot's ledger: not yet in chain figures
    reserved: int  # sum of active reservations
    safety_buffer: int
    available: int  # chain_available - pending_commits - reserved - safety_buffer (may be < 0)
    active_reservations: int
    overcommit: int  # max(0, -available): reservations exceed what the chain has


class AuditEntry(BaseModel):
    id: str  # Redis stream id
    action: str  # reserve, commit, late_commit, release, expire, restore, snapshot, freeze, ...
    loan_id: str | None
    amount: int | None
    reserved_before: int | None
    reserved_after: int | None
    reason: str | None
    alarm: bool
    at_ms: int
    ledger: int | None = None  # chain ledger of a commit / late_commit / snapshot


class BlockReason(StrEnum):
    """Why the ledger refused a reservation (the blocked stream's `reason`)."""

    INSUFFICIENT = "insufficient"
    FROZEN = "frozen"
    UNKNOWN_POOL = "unknown_pool"
    BORROWER_LIMIT_EXCEEDED = "borrower_limit_exceeded"


class BlockedEntry(BaseModel):
    id: str
    loan_id: str
    borrower: str
    reason: BlockReason
    required: int
    available: int | None
    shortage: int | None
    at_ms: int
