"""Key naming. Every key of one pool carries the hash tag `{pool_id}` so a Redis Cluster keeps
them in one slot and a Lua script may touch them all atomically."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PoolKeys:
    state: str  # hash: known, frozen, snapshot figures, counters, fence
    res: str  # hash: loan id -> active reservation record
    exp: str  # zset: loan id scored by hold_until_ms (what sweeping walks)
    bexp: str  # hash: borrower -> active reserved amount (exposure)
    pend: str  # zset: committed loan id scored by commit ledger, until a snapshot covers it
    pamt: str  # hash: committed loan id -> amount pending
    term: str  # hash: loan id -> committed|amount or released|amount
    termx: str  # zset: loan id scored by when its terminal marker may be forgotten
    audit: str  # stream: every mutation
    blocked: str  # stream: every refused reservation
    recon: str  # string: the reconciler's latest report (JSON); no script touches it

    def ordered(self) -> list[str]:
        """The KEYS array every script expects, in the order _lib.lua reads it."""
        return [
            self.state,
            self.res,
            self.exp,
            self.bexp,
            self.pend,
            self.pamt,
            self.term,
            self.termx,
            self.audit,
            self.blocked,
        ]


def pool_keys(prefix: str, pool_id: str) -> PoolKeys:
    if not pool_id or "{" in pool_id or "}" in pool_id:
        raise ValueError(f"pool id must be non-empty and free of braces: {pool_id!r}")
    base = f"{prefix}:{{{pool_id}}}:"
    return PoolKeys(
        state=base + "state",
        res=base + "res",
        exp=base + "exp",
        bexp=base + "bexp",
        pend=base + "pend",
        pamt=base + "pamt",
        term=base + "term",
        termx=base + "termx",
        audit=base + "audit",
        blocked=base + "blocked",
        recon=base + "recon",
    )
