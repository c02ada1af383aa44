"""Turns script replies and stream entries into the typed results of liquidity.types.

Scripts return amounts as decimal strings (never Lua doubles); every subtraction that derives a
figure (available, shortage, overcommit) happens here on Python ints, exactly."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from liquidity.types import (
    AlreadyTerminal,
    AuditEntry,
    BlockedEntry,
    BlockReason,
    BorrowerLimitExceeded,
    CommitResult,
    Frozen,
    Insufficient,
    PoolStatus,
    ReleaseResult,
    Reservation,
    Reserved,
    ReserveResult,
    RestoreResult,
    UnknownPool,
)


def _int(value: str | None) -> int:
    return int(value) if value else 0


def _opt_int(value: str | None) -> int | None:
    return int(value) if value else None


def _opt_str(value: str | None) -> str | None:
    return value if value else None


def reserve_result(
    reply: str, *, loan_id: str, amount: int, buffer: int, limit: int
) -> ReserveResult:
    """Reserved is built with model_construct: every field comes from our own script, already
    typed here, and reserve is the hot path."""
    kind, _, rest = reply.partition("|")
    if kind == "reserved":
        a, e, h, f, replayed = rest.split("|")
        return Reserved.model_construct(
            kind="reserved",
            loan_id=loan_id,
            amount=int(a),
            expires_at_ms=int(e),
            hold_until_ms=int(h),
            fence=int(f),
            replayed=replayed == "1",
        )
    if kind == "insufficient":
        available = int(rest) - buffer
        return Insufficient(available=available, required=amount, shortage=amount - available)
    if kind == "borrower_limit":
        return BorrowerLimitExceeded(exposure=int(rest), required=amount, limit=limit)
    if kind == "frozen":
        return Frozen(reason=rest)
    if kind == "unknown_pool":
        return UnknownPool(reason=rest)
    if kind == "terminal":
        return AlreadyTerminal(state=rest)  # validated by pydantic
    raise ValueError(f"unexpected reserve reply {reply!r}")


def commit_result(reply: str) -> CommitResult:
    outcome, _, amount = reply.partition("|")
    return CommitResult(outcome=outcome, amount=int(amount))


def release_result(reply: str) -> ReleaseResult:
    outcome, _, amount = reply.partition("|")
    return ReleaseResult(outcome=outcome, amount=int(amount))


def restore_result(reply: Sequence[Any], *, buffer: int) -> RestoreResult:
    """Over-commit is only meaningful once chain figures are known; an unknown pool reports 0
    and the reconciler reads status() after establishing the snapshot."""
    known = reply[1] == "1"
    available = int(reply[2]) - buffer
    return RestoreResult(outcome=reply[0], overcommit=max(0, -available) if known else 0)


def pool_status(pool_id: str, reply: Sequence[Any], *, buffer: int) -> PoolStatus:
    known, frozen, reason, ledger, total, locked, chain, pending, reserved, _headroom, n = reply
    chain_available, pending_i, reserved_i = _int(chain), _int(pending), _int(reserved)
    available = chain_available - pending_i - reserved_i - buffer
    return PoolStatus(
        pool_id=pool_id,
        known=known == "1",
        frozen=frozen == "1",
        frozen_reason=_opt_str(reason),
        snapshot_ledger=_int(ledger),
        total=_int(total),
        locked=_int(locked),
        chain_available=chain_available,
        pending_commits=pending_i,
        reserved=reserved_i,
        safety_buffer=buffer,
        available=available,
        active_reservations=int(n),
        overcommit=max(0, -available),
    )


def reservation(loan_id: str, record: str) -> Reservation:
    amount, expires, hold, fence, created, borrower = record.split("|", 5)
    return Reservation(
        loan_id=loan_id,
        borrower=borrower,
        amount=int(amount),
        expires_at_ms=int(expires),
        hold_until_ms=int(hold),
        fence=int(fence),
        created_at_ms=int(created),
    )


def audit_entry(entry_id: str, f: Mapping[str, str]) -> AuditEntry:
    return AuditEntry(
        id=entry_id,
        action=f["action"],
        loan_id=_opt_str(f.get("loan")),
        amount=_opt_int(f.get("amount")),
        reserved_before=_opt_int(f.get("rb")),
        reserved_after=_opt_int(f.get("ra")),
        reason=_opt_str(f.get("reason")),
        alarm=f.get("alarm") == "1",
        at_ms=int(f["at"]),
        ledger=_opt_int(f.get("ledger")),
    )


def _figure(f: Mapping[str, str], name: str, positional: str) -> int:
    """A refusal's figure by name; streams written by earlier versions of reserve.lua carry the
    same figures positionally, as x1/x2."""
    return int(f[name] if name in f else f[positional])


def blocked_entry(entry_id: str, f: Mapping[str, str]) -> BlockedEntry:
    """What the borrower could have had: for `insufficient` the pool's headroom less the safety
    buffer (need = required + buffer); for `borrower_limit_exceeded` what the borrower may still
    take, limit - exposure (room = limit - required)."""
    required = int(f["required"])
    reason = BlockReason(f["reason"])
    available: int | None
    match reason:
        case BlockReason.INSUFFICIENT:
            headroom, need = _figure(f, "headroom", "x1"), _figure(f, "need", "x2")
            available = headroom - (need - required)
        case BlockReason.BORROWER_LIMIT_EXCEEDED:
            exposure, room = _figure(f, "exposure", "x1"), _figure(f, "room", "x2")
            available = room + required - exposure
        case BlockReason.FROZEN | BlockReason.UNKNOWN_POOL:
            available = None
    return BlockedEntry(
        id=entry_id,
        loan_id=f["loan"],
        borrower=f["borrower"],
        reason=reason,
        required=required,
        available=available,
        shortage=None if available is None else required - available,
        at_ms=int(f["at"]),
    )
