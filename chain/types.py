"""Typed values of the chain client. Plain pydantic: no Temporal, no HTTP framework."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel


class FailureReason(StrEnum):
    """Why a transaction was refused or failed, decoded from result XDR / simulation errors."""

    INSUFFICIENT_LIQUIDITY = "insufficient_liquidity"  # Error(Contract, #5) / pool #6
    NOT_CREDITLINE = "not_creditline"  # pool #9
    # StepFi CreditLine create_loan's refusals before liquidity (and its exposure cap after):
    INVALID_AMOUNT = "invalid_amount"  # #9
    INSUFFICIENT_GUARANTEE = "insufficient_guarantee"  # #2
    VENDOR_NOT_ACTIVE = "vendor_not_active"  # #3
    INVALID_VENDOR = "invalid_vendor"  # #16: no vendor registry configured
    VENDOR_VALIDATION_FAILED = "vendor_validation_failed"  # #17: the registry call failed
    INSUFFICIENT_REPUTATION = "insufficient_reputation"  # #4
    EXPOSURE_LIMIT_EXCEEDED = "exposure_limit_exceeded"  # #18
    PARAMETERS_UNAVAILABLE = "parameters_unavailable"  # #20
    INVALID_DUE_DATE = "invalid_due_date"  # #27
    CONTRACT_ERROR = "contract_error"  # any other Error(Contract, #N)
    TOO_LATE = "too_late"  # txTOO_LATE
    TOO_EARLY = "too_early"  # txTOO_EARLY
    BAD_AUTH = "bad_auth"  # txBAD_AUTH
    BAD_SEQ = "bad_seq"  # txBAD_SEQ
    INSUFFICIENT_FEE = "insufficient_fee"  # txINSUFFICIENT_FEE
    INSUFFICIENT_BALANCE = "insufficient_balance"
    NO_ACCOUNT = "no_account"  # txNO_ACCOUNT
    MALFORMED = "malformed"  # the envelope does not decode
    UNKNOWN = "unknown"


class PoolStats(BaseModel):
    """LiquidityPool `get_pool_stats`, with the ledger it was read at."""

    total_liquidity: int
    locked_liquidity: int
    available_liquidity: int
    total_shares: int
    share_price: int
    ledger: int


class FundingTx(BaseModel):
    xdr: str  # unsigned, prepared (simulated) TransactionEnvelope, base64
    tx_hash: str  # hex; fixed before signing, the watcher correlates by it
    max_time: int  # time bound: the transaction cannot land after this Unix second
    source: str  # the borrower's account
    sequence: int


class SubmitResult(BaseModel):
    status: Literal["pending", "duplicate", "try_again_later", "error"]
    tx_hash: str
    reason: FailureReason | None = None
    detail: str = ""


class TxStatus(BaseModel):
    status: Literal["success", "failed", "not_found"]
    tx_hash: str
    ledger: int | None = None
    reason: FailureReason | None = None  # set when failed
    detail: str = ""
    chain_loan_id: int | None = None  # create_loan's return value when it succeeded


class ChainEvent(BaseModel):
    id: str  # RPC event id; also usable as a paging cursor
    ledger: int
    contract_id: str
    name: str  # first topic symbol: LOANCRTD, LQFUND, LQDEPST, LQWTHDR, LQREPAY, ...
    topics: list[Any]  # decoded native values of the remaining topics
    data: Any  # decoded native value of the event body
    tx_hash: str


class EventPage(BaseModel):
    events: list[ChainEvent]
    cursor: str | None  # pass back to continue after the last event returned
    latest_ledger: int
