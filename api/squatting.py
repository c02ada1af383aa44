"""Squatting guard around the loan workflow: admits a POST /v1/loans against the rate limits
and the unsigned-reservation caps of its API key and of its borrower (api/auth/admission.py)
before anything is reserved, and keeps the counts in line with what happens to the loan.

A loan stops counting as unsigned when the API relays its signed transaction or cancels it, when
the workflow refuses it, or when its reservation expires (the count's own expiry). A loan that
ends another way (submitted straight to the chain, released by the reconciler) is found when a
principal reaches its cap: its open loans are then looked up once (at most every few seconds)
and the ones no longer waiting for a signature are dropped before the cap is applied."""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass

from temporalio.client import Client

from api.auth.admission import Admission, CapReached, RateLimited, Verdict
from api.auth.principal import Principal
from api.errors import ApiError
from core.models import LoanState
from core.settings import Settings
from workflows import loan_client

PRUNE_EVERY_MS = 5_000
PRUNE_TIMEOUT_S = 5.0
STILL_UNSIGNED = frozenset({LoanState.ASSESSING, LoanState.RESERVED})


@dataclass(frozen=True)
class Quota:
    who: str  # "key:<id>" or "account:<G...>"
    scope: str  # "key" or "borrower": named in refusals
    rate_per_minute: int
    cap: int


def quotas(settings: Settings, caller: Principal, borrower: str) -> list[Quota]:
    """The key's (for API keys; its own overrides first) and the borrower's, in that order."""
    out = []
    if caller.kind == "key":
        out.append(
            Quota(
                f"key:{caller.id}",
                "key",
                caller.rate_per_minute or settings.loan_rate_per_key_per_minute,
                caller.max_unsigned or settings.max_unsigned_per_key,
            )
        )
    out.append(
        Quota(
            f"account:{borrower}",
            "borrower",
            settings.loan_rate_per_borrower_per_minute,
            settings.max_unsigned_per_borrower,
        )
    )
    return out


def _refusal(quota: Quota, verdict: RateLimited | CapReached) -> ApiError:
    if isinstance(verdict, RateLimited):
        retry = max(1, math.ceil(verdict.retry_after_ms / 1000))
        return ApiError(
            429,
            "rate_limited",
            f"too many loan requests for this {quota.scope}; nothing was reserved. "
            f"Retry after {retry} s",
            {
                "scope": quota.scope,
                "limit_per_minute": quota.rate_per_minute,
                "retry_after_seconds": retry,
            },
            {"Retry-After": str(retry)},
        )
    return ApiError(
        409,
        "too_many_unsigned",
        f"this {quota.scope} already holds {verdict.open_count} reserved loans "
        "nobody has signed; nothing was reserved. Submit or cancel one, or wait for "
        "one to expire",
        {"scope": quota.scope, "limit": quota.cap, "open_unsigned": verdict.open_count},
    )


class SquattingGuard:
    def __init__(self, admission: Admission, settings: Settings) -> None:
        self._admission = admission
        self._settings = settings

    async def admit(
        self, client: Client, caller: Principal, borrower: str, loan_id: str, hold_s: int
    ) -> list[str]:
        """Admits the request or raises 429/409; returns the principals that newly count the
        loan (to release if the loan is refused)."""
        hold_until_ms = int(time.time() * 1000) + hold_s * 1000
        added: list[str] = []
        for quota in quotas(self._settings, caller, borrower):
            verdict = await self._admit_one(client, quota, loan_id, hold_until_ms)
            if isinstance(verdict, RateLimited | CapReached):
                for who in added:
                    await self._admission.release(who, loan_id)
                raise _refusal(quota, verdict)
            if verdict.added:
                added.append(quota.who)
        if caller.kind == "key":
            await self._admission.remember_opener(loan_id, caller.id, hold_until_ms)
        return added

    async def _admit_one(
        self, client: Client, quota: Quota, loan_id: str, hold_until_ms: int
    ) -> Verdict:
        async def once() -> Verdict:
            return await self._admission.admit(
                quota.who,
                loan_id,
                rate_per_minute=quota.rate_per_minute,
                cap=quota.cap,
                hold_until_ms=hold_until_ms,
            )

        verdict = await once()
        if (
            isinstance(verdict, CapReached)
            and await self._admission.may_prune(quota.who, PRUNE_EVERY_MS)
            and await self._prune(client, quota.who)
        ):
            verdict = await once()  # counts as a second request for the rate: errs on refusing
        return verdict

    async def _prune(self, client: Client, who: str) -> int:
        """Drops the loans of `who` that no longer wait for a signature; how many."""
        loans = await self._admission.open_loans(who)
        gate = asyncio.Semaphore(16)

        async def settled(loan_id: str) -> bool:
            async with gate:
                try:
                    view = await asyncio.wait_for(
                        loan_client.recorded_view(client, loan_id), PRUNE_TIMEOUT_S
                    )
                except Exception:
                    return False  # not known now: keep counting it (errs on refusing)
            return view is not None and view.state not in STILL_UNSIGNED

        done = await asyncio.gather(*(settled(i) for i in loans))
        stale = [i for i, gone in zip(loans, done, strict=True) if gone]
        for loan_id in stale:
            await self._admission.release(who, loan_id)
        return len(stale)

    async def refused(self, loan_id: str, added: list[str]) -> None:
        """The workflow reserved nothing: the loan no longer counts where it was just added."""
        for who in added:
            await self._admission.release(who, loan_id)

    async def offered(
        self, loan_id: str, borrower: str, caller: Principal, expires_at: int
    ) -> None:
        """The exact expiry of the reservation, now known."""
        until_ms = expires_at * 1000
        for quota in quotas(self._settings, caller, borrower):
            await self._admission.hold_until(quota.who, loan_id, until_ms)

    async def signed_or_gone(self, loan_id: str, borrower: str) -> None:
        """Submitted or cancelled: no longer an unsigned reservation, wherever it counts."""
        await self._admission.release(f"account:{borrower}", loan_id)
        opener = await self._admission.opener(loan_id)
        if opener is not None:
            await self._admission.release(f"key:{opener}", loan_id)
