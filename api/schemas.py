"""Request and response bodies of the HTTP API.

Amounts cross the wire as decimal strings ("12.5") and become integer stroops here, through
core.money: JSON numbers are refused for amounts so a float never touches one. Requests are
validated as the CreditLine contract would validate them, so nothing the chain would refuse for
its shape is ever reserved."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, model_validator
from stellar_sdk import StrKey

from core.models import (
    HistoryEntry,
    Installment,
    LoanOffer,
    LoanRefusal,
    LoanState,
    LoanTerms,
    LoanView,
)
from core.money import AmountError, format_stroops, to_stroops
from liquidity.types import AuditEntry, BlockedEntry, PoolStatus, Reservation

U32_MAX = 2**32 - 1
U64_MAX = 2**64 - 1

# Plain decimal notation only: an exponent form ("1e999999999") would make Decimal -> int build
# a number with a billion digits before any range check could refuse it.
_DECIMAL_PATTERN = r"^[0-9]{1,40}(\.[0-9]{1,40})?$"


def _check_amount(text: str) -> str:
    try:
        to_stroops(text)
    except AmountError as exc:
        raise ValueError(str(exc)) from exc
    return text


def _check_account(text: str) -> str:
    if not StrKey.is_valid_ed25519_public_key(text):
        raise ValueError("not a Stellar account id (G...)")
    return text


AmountStr = Annotated[
    str,
    Field(
        pattern=_DECIMAL_PATTERN,
        max_length=81,
        examples=["125.5"],
        description="decimal string in asset units, at most 7 decimals, > 0",
    ),
    AfterValidator(_check_amount),
]
AccountId = Annotated[
    str,
    Field(
        min_length=56,
        max_length=56,
        examples=["GA7QYNF7SOWQ3GLR2BGMZEHXAVIRZA4KVWLTJJFC7MGXUA74P7UJVSGZ"],
    ),
    AfterValidator(_check_account),
]


class InstallmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: AmountStr
    due_date: StrictInt = Field(ge=0, le=U64_MAX, description="Unix seconds (u64)")


class LoanRequest(BaseModel):
    """Body of POST /v1/loans: the arguments of CreditLine `create_loan`."""

    model_config = ConfigDict(extra="forbid")

    pool_id: str = Field(min_length=1, max_length=128, description="pool contract id")
    borrower: AccountId
    vendor: AccountId
    total_amount: AmountStr
    guarantee_amount: AmountStr
    repayment_schedule: list[InstallmentIn] = Field(min_length=1, max_length=360)
    loan_type: StrictInt = Field(default=0, ge=0, le=U32_MAX)
    ttl_seconds: StrictInt | None = Field(
        default=None,
        ge=5,
        le=86_400,
        description="how long the reservation (and the transaction's max_time) lasts; "
        "default and upper bound: the server's RESERVATION_TTL_SECONDS",
    )

    @model_validator(mode="after")
    def _guarantee_within_total(self) -> LoanRequest:
        if to_stroops(self.guarantee_amount) > to_stroops(self.total_amount):
            raise ValueError("guarantee_amount must not exceed total_amount")
        return self

    def terms(self) -> LoanTerms:
        return LoanTerms(
            borrower=self.borrower,
            vendor=self.vendor,
            total_amount=to_stroops(self.total_amount),
            guarantee_amount=to_stroops(self.guarantee_amount),
            repayment_schedule=[
                Installment(amount=to_stroops(i.amount), due_date=i.due_date)
                for i in self.repayment_schedule
            ],
            loan_type=self.loan_type,
        )

    def fingerprint(self) -> str:
        """sha256 of the canonical body: amounts in stroops, so "12.50" and "12.5" are one
        request, and any change of meaning is a different request."""
        canonical = {
            "pool_id": self.pool_id,
            "terms": self.terms().model_dump(mode="json"),
            "ttl_seconds": self.ttl_seconds,
        }
        blob = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


class SubmitRequest(BaseModel):
    """One of the two, by the loan's funding mode: `signed_xdr` (source_account) or
    `signed_auth_entry` (sponsored)."""

    model_config = ConfigDict(extra="forbid")

    signed_xdr: str | None = Field(
        default=None,
        min_length=1,
        max_length=100_000,
        description="source_account mode: the funding transaction envelope, signed by the borrower",
    )
    signed_auth_entry: str | None = Field(
        default=None,
        min_length=1,
        max_length=100_000,
        description="sponsored mode: the offered authorization entry, signed by the borrower "
        "(stellar-sdk authorize_entry, or a wallet's signAuthEntry), base64 XDR",
    )

    @model_validator(mode="after")
    def _one_of(self) -> SubmitRequest:
        if (self.signed_xdr is None) == (self.signed_auth_entry is None):
            raise ValueError("give exactly one of signed_xdr and signed_auth_entry")
        return self


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="cancelled by the borrower", max_length=200)


class FreezeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=200)


# ---------------------------------------------------------------- responses


class ErrorInfo(BaseModel):
    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorOut(BaseModel):
    error: ErrorInfo


class FundingOut(BaseModel):
    mode: str = Field(default="source_account", description="source_account or sponsored")
    xdr: str = Field(description="source_account: the transaction to sign; sponsored: empty")
    tx_hash: str = Field(description="sponsored: empty until the channel's transaction is sent")
    expires_at: int = Field(description="Unix seconds; the transaction's max_time")
    auth_entry: str = Field(
        default="", description="sponsored: the unsigned SorobanAuthorizationEntry, base64"
    )
    valid_until_ledger: int = Field(
        default=0, description="sponsored: the entry's signature expiration ledger (inclusive)"
    )


class LoanCreated(BaseModel):
    loan_id: str
    state: LoanState
    funding: FundingOut
    reserved_amount: str

    @classmethod
    def of(cls, offer: LoanOffer) -> LoanCreated:
        return cls(
            loan_id=offer.loan_id,
            state=offer.state,
            funding=FundingOut(**offer.funding.model_dump()),
            reserved_amount=format_stroops(offer.reserved_amount),
        )


class RefusalOut(BaseModel):
    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class LoanOut(BaseModel):
    loan_id: str
    pool_id: str
    state: LoanState
    borrower: str
    vendor: str
    total_amount: str
    guarantee_amount: str
    reserved_amount: str
    funding: FundingOut | None = None
    refusal: RefusalOut | None = None
    settled_ledger: int | None = None
    failure_reason: str | None = None
    history: list[HistoryEntry] = Field(default_factory=list)

    @classmethod
    def of(cls, view: LoanView) -> LoanOut:
        return cls(
            loan_id=view.loan_id,
            pool_id=view.pool_id,
            state=view.state,
            borrower=view.borrower,
            vendor=view.vendor,
            total_amount=format_stroops(view.total_amount),
            guarantee_amount=format_stroops(view.guarantee_amount),
            reserved_amount=format_stroops(view.reserved_amount),
            funding=FundingOut(**view.funding.model_dump()) if view.funding else None,
            refusal=refusal_out(view.refusal) if view.refusal else None,
            settled_ledger=view.settled_ledger,
            failure_reason=view.failure_reason,
            history=view.history,
        )


# Keys that hold stroops in refusal details and reconciliation reports; rendered as decimal
# strings like every amount (ledger numbers, times and counts stay integers).
AMOUNT_KEYS = frozenset(
    {
        # refusal details
        "available",
        "required",
        "shortage",
        "exposure",
        "limit",
        "amount",
        # reconciliation reports
        "total",
        "locked",
        "locked_delta",
        "total_delta",
        "funded_ours",
        "funded_external",
        "repaid",
        "interest",
        "deposited",
        "withdrawn",
        "unexplained_locked",
        "unexplained_total",
        "reserved",
        "overcommit",
    }
)


def amounts_as_decimal(value: Any) -> Any:
    """`value` with every integer under an AMOUNT_KEYS key, at any depth, as a decimal string."""
    if isinstance(value, dict):
        return {
            k: format_stroops(v)
            if k in AMOUNT_KEYS and isinstance(v, int) and not isinstance(v, bool)
            else amounts_as_decimal(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [amounts_as_decimal(v) for v in value]
    return value


def refusal_out(refusal: LoanRefusal) -> RefusalOut:
    return RefusalOut(
        code=refusal.code, message=refusal.message, details=amounts_as_decimal(refusal.details)
    )


class PoolLiquidity(BaseModel):
    pool_id: str
    known: bool
    frozen: bool
    frozen_reason: str | None
    ledger: int = Field(description="ledger of the chain snapshot the figures start from")
    total: str
    locked: str
    chain_available: str
    pending_commits: str
    reserved: str
    safety_buffer: str
    available: str
    active_reservations: int
    overcommit: str

    @classmethod
    def of(cls, s: PoolStatus) -> PoolLiquidity:
        return cls(
            pool_id=s.pool_id,
            known=s.known,
            frozen=s.frozen,
            frozen_reason=s.frozen_reason,
            ledger=s.snapshot_ledger,
            total=format_stroops(s.total),
            locked=format_stroops(s.locked),
            chain_available=format_stroops(s.chain_available),
            pending_commits=format_stroops(s.pending_commits),
            reserved=format_stroops(s.reserved),
            safety_buffer=format_stroops(s.safety_buffer),
            available=format_stroops(s.available),
            active_reservations=s.active_reservations,
            overcommit=format_stroops(s.overcommit),
        )


class ReservationOut(BaseModel):
    loan_id: str
    borrower: str
    amount: str
    expires_at_ms: int
    hold_until_ms: int
    fence: int
    created_at_ms: int

    @classmethod
    def of(cls, r: Reservation) -> ReservationOut:
        return cls(**{**r.model_dump(), "amount": format_stroops(r.amount)})


class ReservationList(BaseModel):
    pool_id: str
    reservations: list[ReservationOut]


def _opt_amount(v: int | None) -> str | None:
    return None if v is None else format_stroops(v)


class AuditOut(BaseModel):
    id: str
    action: str
    loan_id: str | None
    amount: str | None
    reserved_before: str | None
    reserved_after: str | None
    reason: str | None
    alarm: bool
    at_ms: int

    @classmethod
    def of(cls, e: AuditEntry) -> AuditOut:
        return cls(
            id=e.id,
            action=e.action,
            loan_id=e.loan_id,
            amount=_opt_amount(e.amount),
            reserved_before=_opt_amount(e.reserved_before),
            reserved_after=_opt_amount(e.reserved_after),
            reason=e.reason,
            alarm=e.alarm,
            at_ms=e.at_ms,
        )


class AuditPage(BaseModel):
    pool_id: str
    entries: list[AuditOut]
    next_before: str | None = Field(description="pass as `before` for the next (older) page")


class BlockedOut(BaseModel):
    id: str
    loan_id: str
    borrower: str
    reason: str
    required: str
    available: str | None
    shortage: str | None
    at_ms: int

    @classmethod
    def of(cls, e: BlockedEntry) -> BlockedOut:
        return cls(
            id=e.id,
            loan_id=e.loan_id,
            borrower=e.borrower,
            reason=e.reason,
            required=format_stroops(e.required),
            available=_opt_amount(e.available),
            shortage=_opt_amount(e.shortage),
            at_ms=e.at_ms,
        )


class BlockedPage(BaseModel):
    pool_id: str
    entries: list[BlockedOut]
    next_before: str | None


class FreezeOut(BaseModel):
    pool_id: str
    frozen: bool
    liquidity: PoolLiquidity


class Health(BaseModel):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)
