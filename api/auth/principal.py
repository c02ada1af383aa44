"""The authenticated caller, whatever credential it showed, and the scopes that gate routes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

LOANS_WRITE = "loans:write"
LOANS_READ = "loans:read"
POOLS_READ = "pools:read"
OPERATOR = "operator"
SCOPES: tuple[str, ...] = (LOANS_WRITE, LOANS_READ, POOLS_READ, OPERATOR)

Kind = Literal["key", "account", "admin"]


@dataclass(frozen=True)
class Principal:
    """`kind` "key": an API key (`id` is the key id); "account": a borrower's SEP-10 token
    (`id` is the Stellar account, G...); "admin": the bootstrap ADMIN_TOKEN (operator only).

    A borrower token carries no scopes: what it may do is decided by ownership (the loan's
    borrower is the token's account), never by a scope it could be granted by mistake."""

    kind: Kind
    id: str
    scopes: frozenset[str] = field(default_factory=frozenset)
    # Per-key overrides of the admission limits (None: the settings' defaults).
    rate_per_minute: int | None = None
    max_unsigned: int | None = None

    @property
    def account(self) -> str | None:
        return self.id if self.kind == "account" else None

    def has(self, scope: str) -> bool:
        return scope in self.scopes
