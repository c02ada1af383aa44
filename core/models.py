"""Shared pydantic models: the loan's terms (what the chain sees) and the saga's interface
(what the API, the watcher and operators exchange with a loan workflow).

All amounts are integer stroops. Times are Unix seconds (int) unless the name says `_ms`."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field


class Installment(BaseModel):
    """One entry of the creditline's repayment schedule: `{amount: i128, due_date: u64}`."""

    amount: int
    due_date: int


class LoanTerms(BaseModel):
    """Arguments of CreditLine `create_loan`; the pool funds `total_amount - guarantee_amount`."""

    borrower: str  # G... account: signs the funding transaction, is `user` on chain
    vendor: str  # G... account that receives the funds
    total_amount: int
    guarantee_amount: int
    repayment_schedule: list[Installment]
    loan_type: int = 0

    @property
    def funded_amount(self) -> int:
        return self.total_amount - self.guarantee_amount


class LoanState(StrEnum):
    """Values of the `LoanState` search attribute; terminal ones end the workflow."""

    ASSESSING = "assessing"
    RESERVED = "reserved"  # XDR handed out, waiting for the borrower
    SUBMITTED = "submitted"  # signed XDR relayed to the chain
    FUNDED = "funded"  # settled on chain, reservation committed
    FAILED = "failed"  # settlement failed on chain, reservation released
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    REFUSED = "refused"  # declined / insufficient / frozen / unknown: nothing was reserved


TERMINAL_STATES = frozenset(
    {LoanState.FUNDED, LoanState.FAILED, LoanState.CANCELLED, LoanState.EXPIRED, LoanState.REFUSED}
)


class SagaTimeouts(BaseModel):
    """The loan workflow's activity bounds, from settings (the starter sends them with the loan,
    so a workflow reads no configuration). The defaults are the bounds of loans started before
    they were settings: their histories replay as they ran."""

    open_step_seconds: float = 10.0  # one attempt of an open step (assess, reserve, build)
    open_budget_seconds: float = 30.0  # all attempts of one open step; then the open fails
    obligation_attempt_seconds: float = 15.0  # one attempt of commit / release (retried)


class LoanInput(BaseModel):
    """Workflow start argument of `LoanWorkflow` (workflow id `loan-<loan_id>`)."""

    loan_id: str
    pool_id: str  # pool contract id
    creditline_id: str  # the pool's CreditLine contract (resolved by the API from settings.pools)
    terms: LoanTerms
    fingerprint: str  # hash of the canonical request body: same key + other body is refused
    ttl_seconds: int | None = None  # None: settings.reservation_ttl_seconds
    # When the caller stops waiting for the open (the API's bounded wait). Open steps that only
    # start later refuse `open_deadline_passed` instead of reserving: the workflow compares it
    # with workflow.now(), so the decision replays the same. None: no deadline (older runs).
    open_deadline: datetime | None = None
    timeouts: SagaTimeouts = Field(default_factory=SagaTimeouts)


class OpenLoan(BaseModel):
    """Argument of the `open` update sent with update-with-start (update id = idempotency key).

    The server deduplicates updates by id and hands back the *first* call's result, so echoing
    the fingerprint and nonce lets the API tell a replay (other nonce) from a key reused with
    another body (other fingerprint)."""

    fingerprint: str
    request_nonce: str


class Funding(BaseModel):
    """`source_account`: `xdr` is the borrower's transaction to sign, `tx_hash` its hash.
    `sponsored`: `auth_entry` is the create_loan authorization entry to sign (valid through
    `valid_until_ledger`); `tx_hash` is empty until the channel's transaction is submitted."""

    xdr: str
    tx_hash: str
    expires_at: int  # Unix seconds; also the transaction's time-bound max_time
    mode: Literal["source_account", "sponsored"] = "source_account"
    auth_entry: str = ""  # base64 SorobanAuthorizationEntry, unsigned (sponsored mode)
    valid_until_ledger: int = 0  # the entry's signature_expiration_ledger (sponsored mode)


class LoanOffer(BaseModel):
    """The update's success result: the reservation holds and the XDR is ready to sign."""

    kind: Literal["offer"] = "offer"
    loan_id: str
    state: LoanState
    funding: Funding
    reserved_amount: int
    fingerprint: str
    request_nonce: str


RefusalCode = Literal[
    "insufficient_liquidity",
    "credit_declined",
    "pool_frozen",
    "pool_unknown",
    "open_deadline_passed",
]


class LoanRefusal(BaseModel):
    """The update's business refusal: a result with reasons, never a crash. Nothing is reserved."""

    kind: Literal["refusal"] = "refusal"
    loan_id: str
    code: RefusalCode
    message: str
    details: dict[str, Any] = Field(default_factory=dict)
    fingerprint: str
    request_nonce: str


OpenResult = LoanOffer | LoanRefusal


class Submitted(BaseModel):
    """Signal `submitted`: the API relayed the borrower's signed XDR to the chain."""

    tx_hash: str


class Settled(BaseModel):
    """Signal `settled` (from the watcher): the funding transaction succeeded on chain."""

    tx_hash: str
    ledger: int
    chain_loan_id: int | None = None


class SettlementFailed(BaseModel):
    """Signal `settlement_failed` (from the watcher): the funding transaction failed on chain."""

    tx_hash: str
    ledger: int | None = None
    reason: str  # a chain.FailureReason value, e.g. "insufficient_liquidity", "too_late"
    detail: str = ""


class Cancel(BaseModel):
    """Signal `cancel`: the borrower or an operator gave up on the loan."""

    reason: str = "cancelled"


class HistoryEntry(BaseModel):
    at: datetime
    state: LoanState
    detail: str = ""


class LoanView(BaseModel):
    """Query `status`: what the API serves at GET /v1/loans/{id} and what operators inspect."""

    loan_id: str
    pool_id: str
    state: LoanState
    borrower: str
    vendor: str
    total_amount: int
    guarantee_amount: int
    reserved_amount: int
    funding: Funding | None = None
    refusal: LoanRefusal | None = None
    settled_ledger: int | None = None
    failure_reason: str | None = None
    fingerprint: str
    history: list[HistoryEntry] = Field(default_factory=list)
