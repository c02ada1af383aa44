"""The reservation ledger on Redis: Lua scripts + a typed async facade (no Temporal, no HTTP)."""

from liquidity.ledger import MAX_AMOUNT, Ledger
from liquidity.types import (
    AlreadyTerminal,
    AuditEntry,
    BlockedEntry,
    BorrowerLimitExceeded,
    CommitOutcome,
    CommitResult,
    Frozen,
    Insufficient,
    PoolStatus,
    ReleaseOutcome,
    ReleaseResult,
    Reservation,
    Reserved,
    ReserveResult,
    RestoreResult,
    SnapshotResult,
    UnknownPool,
)

__all__ = [
    "MAX_AMOUNT",
    "AlreadyTerminal",
    "AuditEntry",
    "BlockedEntry",
    "BorrowerLimitExceeded",
    "CommitOutcome",
    "CommitResult",
    "Frozen",
    "Insufficient",
    "Ledger",
    "PoolStatus",
    "ReleaseOutcome",
    "ReleaseResult",
    "Reservation",
    "ReserveResult",
    "Reserved",
    "RestoreResult",
    "SnapshotResult",
    "UnknownPool",
]
