"""Exceptions of the chain client.

Two kinds only, because callers react to exactly two situations: the chain said no (a business
outcome the saga turns into a refusal), or the chain could not be asked (retry with backoff)."""

from __future__ import annotations

from chain.types import FailureReason


class ChainRefusal(Exception):
    """The chain (or its simulation) said no: a decided outcome; retrying it is useless."""

    def __init__(self, reason: FailureReason, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail


class ChainUnavailable(Exception):
    """The RPC endpoint could not be reached or answered garbage: transient, callers back off."""
