"""Activities of the loan saga: thin adapters from Temporal to the ledger, the chain client and
the transaction index. No decisions are made here beyond translating outcomes into typed results.

Business refusals (insufficient liquidity, frozen pool, a transaction the chain refuses to
simulate) come back as plain results, so Temporal never retries them; only transport failures
raise and are retried under the workflow's retry policy.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Protocol

from pydantic import BaseModel, Field
from stellar_sdk import Keypair
from temporalio import activity
from temporalio.client import Client
from temporalio.common import MetricMeter

from chain.client import ChainClient
from chain.errors import ChainRefusal
from chain.sponsored import SponsoredOffer
from chain.types import FailureReason, FundingTx, TxStatus
from core.models import LoanTerms
from core.settings import Settings
from liquidity.ledger import Ledger
from liquidity.tx_index import TxIndex, TxRef
from liquidity.types import CommitResult, ReleaseResult, Reserved, ReserveResult

from .credit_policy import declines


class AssessRequest(BaseModel):
    terms: LoanTerms


class Assessment(BaseModel):
    reasons: list[str]
    codes: list[str] = []  # the typed reason of each (empty in histories recorded before them)


class ReserveRequest(BaseModel):
    pool_id: str
    loan_id: str
    borrower: str
    amount: int
    ttl_seconds: int | None = None


class ReserveOutcome(BaseModel):
    result: Annotated[ReserveResult, Field(discriminator="kind")]


class BuildRequest(BaseModel):
    loan_id: str
    pool_id: str
    creditline_id: str
    terms: LoanTerms
    max_time: int


class BuildRefusal(StrEnum):
    """The build step's own refusals, beside the chain's (FailureReason)."""

    SEQUENCE_IN_USE = "sequence_in_use"  # the borrower's open funding transaction holds it
    NO_CHANNEL_ACCOUNTS = "no_channel_accounts"  # sponsored mode without CHANNEL_SECRETS


class BuildOutcome(BaseModel):
    """Either the prepared transaction (or, in sponsored mode, the authorization entry to sign)
    or why it was not built: the chain refused to simulate it, or the saga refused to build it."""

    funding: FundingTx | None = None
    sponsored: SponsoredOffer | None = None
    refusal_reason: FailureReason | BuildRefusal | None = None
    refusal_detail: str = ""


class CommitRequest(BaseModel):
    pool_id: str
    loan_id: str
    ledger: int
    # When the signed transaction was relayed (Unix ms), for the settlement-duration metric.
    submitted_at_ms: int | None = None


class ReleaseCause(StrEnum):
    """Why the saga gives a loan's reservation back."""

    CANCELLED = "cancelled"
    EXPIRED = "expired"
    BUILD_REFUSED = "build_refused"
    OPEN_FAILED = "open_failed"
    SETTLEMENT_FAILED = "settlement_failed"


@dataclass(frozen=True)
class ReleaseReason:
    cause: ReleaseCause
    chain_reason: str = ""  # SETTLEMENT_FAILED: the chain's FailureReason value

    def audit_text(self) -> str:
        """The ledger's audit `reason`: a stable value that audit streams and dashboards keep."""
        match self.cause:
            case ReleaseCause.SETTLEMENT_FAILED:
                return f"settlement_failed:{self.chain_reason}"
            case cause:
                return cause.value


class ReleaseRequest(BaseModel):
    pool_id: str
    loan_id: str
    reason: str  # ReleaseReason.audit_text()
    # The terminal state the loan reaches with this release (None: the workflow decides later).
    finish_state: str | None = None


class WatchRequest(BaseModel):
    tx_hash: str
    until: int


class OpenLoanJournal(Protocol):
    """A durable record of the loans that may hold a reservation (workflows/loan_journal.py)."""

    async def record(self, loan_id: str, pool_id: str, hold_until_ms: int) -> None: ...


JournalFactory = Callable[[Client], OpenLoanJournal]


class LoanActivities:
    """Holds the process-wide clients; one instance is registered with the worker."""

    def __init__(
        self,
        *,
        settings: Settings,
        ledger: Ledger,
        chain: ChainClient,
        tx_index: TxIndex,
        journal: JournalFactory | None = None,
    ) -> None:
        self._settings = settings
        self._ledger = ledger
        self._chain = chain
        self._tx_index = tx_index
        self._journal = journal

    @activity.defn(name="loan.assess")
    async def assess(self, request: AssessRequest) -> Assessment:
        found = declines(request.terms, settings=self._settings, now=int(time.time()))
        return Assessment(reasons=[text for _, text in found], codes=[c for c, _ in found])

    @activity.defn(name="loan.reserve")
    async def reserve(self, request: ReserveRequest) -> ReserveOutcome:
        ttl = request.ttl_seconds or self._settings.reservation_ttl_seconds
        result = await self._ledger.reserve(
            request.pool_id,
            request.loan_id,
            request.borrower,
            request.amount,
            ttl_ms=ttl * 1000,
            grace_ms=self._settings.settlement_grace_seconds * 1000,
            borrower_limit=self._settings.borrower_limit_stroops,
        )
        if isinstance(result, Reserved) and self._journal is not None:
            # Journaled before this activity returns, so before any XDR can leave the saga: a
            # restore after a loss finds this loan however fresh it is (workflows/loan_journal).
            await self._journal(activity.client()).record(
                request.loan_id, request.pool_id, result.hold_until_ms
            )
        outcome = "replayed" if isinstance(result, Reserved) and result.replayed else result.kind
        activity.metric_meter().create_counter(
            "ledger_reserve", "Reservation attempts by outcome (reserved or why refused)"
        ).add(1, {"pool": request.pool_id, "outcome": outcome})
        return ReserveOutcome(result=result)

    @activity.defn(name="loan.build_funding")
    async def build_funding(self, request: BuildRequest) -> BuildOutcome:
        """Builds the XDR and maps its hash to the loan *before* the XDR can reach a borrower.
        In sponsored mode it offers the authorization entry instead: no transaction, no hash
        and no borrower sequence yet (the submit assembles the channel's transaction)."""
        if self._settings.funding_mode == "sponsored":
            return await self._offer_sponsored(request)
        try:
            funding = await self._chain.build_funding_tx(
                request.creditline_id, request.terms, max_time=request.max_time
            )
        except ChainRefusal as refusal:
            return BuildOutcome(refusal_reason=refusal.reason, refusal_detail=refusal.detail)
        owner = await self._tx_index.claim_funding(
            TxRef(
                tx_hash=funding.tx_hash,
                loan_id=request.loan_id,
                pool_id=request.pool_id,
                expires_at=funding.max_time,
            ),
            account=funding.source,
            sequence=funding.sequence,
            until=funding.max_time + self._settings.settlement_grace_seconds,
        )
        if owner != request.loan_id:
            return BuildOutcome(
                refusal_reason=BuildRefusal.SEQUENCE_IN_USE,
                refusal_detail=(
                    f"the borrower's open funding transaction of loan {owner} holds sequence "
                    f"{funding.sequence} until it settles or expires"
                ),
            )
        return BuildOutcome(funding=funding)

    async def _offer_sponsored(self, request: BuildRequest) -> BuildOutcome:
        channels = self._settings.channel_secret_list
        if not channels:
            return BuildOutcome(
                refusal_reason=BuildRefusal.NO_CHANNEL_ACCOUNTS,
                refusal_detail="FUNDING_MODE=sponsored needs CHANNEL_SECRETS",
            )
        # any channel account serves as the simulation's source: the borrower is then not the
        # source, so recording mode records the borrower's address-credential entry
        sponsor = Keypair.from_secret(channels[0]).public_key
        try:
            offer = await self._chain.offer_sponsored_entry(
                request.creditline_id,
                request.terms,
                sponsor=sponsor,
                expires_at=request.max_time,
                ledger_seconds=self._settings.ledger_seconds,
            )
        except ChainRefusal as refusal:
            return BuildOutcome(refusal_reason=refusal.reason, refusal_detail=refusal.detail)
        return BuildOutcome(sponsored=offer)

    @activity.defn(name="loan.watch_submission")
    async def watch_submission(self, request: WatchRequest) -> None:
        await self._tx_index.watch(request.tx_hash, until=request.until)

    @activity.defn(name="loan.settlement_status")
    async def settlement_status(self, tx_hash: str) -> TxStatus:
        return await self._chain.transaction(tx_hash)

    @activity.defn(name="loan.commit")
    async def commit(self, request: CommitRequest) -> CommitResult:
        """The loan's last step when funded, so its terminal metrics are recorded here: an
        activity's completion is recorded once, while the workflow code after its last
        completed task runs again when that task's completion is refused (a signal that arrived
        meanwhile), which counted such loans twice from the workflow's meter."""
        result = await self._ledger.commit(request.pool_id, request.loan_id, ledger=request.ledger)
        meter = activity.metric_meter()
        _finished(meter, "funded")
        if request.submitted_at_ms is not None:
            elapsed = max(time.time() - request.submitted_at_ms / 1000, 0.0)
            meter.create_histogram_float(
                "loan_settlement_duration_seconds",
                "From the signed transaction relayed to the reservation committed",
                "s",
            ).record(elapsed)
        return result

    @activity.defn(name="loan.release")
    async def release(self, request: ReleaseRequest) -> ReleaseResult:
        result = await self._ledger.release(request.pool_id, request.loan_id, reason=request.reason)
        if result.outcome != "already_committed":  # a funded loan's sequence is spent anyway
            await self._tx_index.release_claim(request.loan_id)
        # As in commit: a release that ends the loan counts it here (already committed: the
        # chain settled first, the loan ends funded whatever the release was for).
        if result.outcome == "already_committed":
            _finished(activity.metric_meter(), "funded")
        elif request.finish_state is not None:
            _finished(activity.metric_meter(), request.finish_state)
        return result

    def all(self) -> list[object]:
        """The bound activity methods, for `Worker(activities=...)`."""
        return [
            self.assess,
            self.reserve,
            self.build_funding,
            self.watch_submission,
            self.settlement_status,
            self.commit,
            self.release,
        ]


def _finished(meter: MetricMeter, state: str) -> None:
    meter.create_counter("loans_finished", "Loans that reached a terminal state").add(
        1, {"state": state}
    )
