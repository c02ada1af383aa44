"""Loan routes: open a loan (update-with-start on the loan workflow), read it, relay the signed
funding transaction, cancel it. Business outcomes come back from the workflow as values; this
module only maps them to HTTP statuses and the one error shape.

Who may: a key with `loans:write` opens, submits and cancels any loan, `loans:read` reads any;
a borrower's SEP-10 token does all four for its own account's loans only. On a loan that is not
its own, a borrower token gets the same 403 whether the loan exists or not: it learns nothing."""

from __future__ import annotations

import asyncio
import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header
from fastapi.responses import JSONResponse
from stellar_sdk import Keypair
from temporalio.client import Client, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.service import RPCError

from api.auth.deps import CallerDep, forbidden, require_scope
from api.auth.principal import LOANS_READ, LOANS_WRITE, Principal
from api.deps import Services, ServicesDep, TemporalDep
from api.errors import ApiError, error_body
from api.schemas import (
    CancelRequest,
    ErrorOut,
    LoanCreated,
    LoanOut,
    LoanRequest,
    SubmitRequest,
    amounts_as_decimal,
)
from api.transient_refusals import (
    TRANSIENT_CODES,
    KeyAttempts,
    attempt_loan_id,
    attempt_update_id,
)
from chain import sponsored
from chain.envelope import decode_envelope
from chain.errors import ChainRefusal, ChainUnavailable
from chain.types import FailureReason
from channels.pool import ChannelsBusy
from core.models import (
    TERMINAL_STATES,
    Cancel,
    LoanInput,
    LoanOffer,
    LoanRefusal,
    LoanState,
    LoanView,
    OpenLoan,
    Submitted,
)
from core.telemetry.logs import bind
from liquidity.tx_index import TxRef
from workflows import loan_client
from workflows.loan_client import LoanClosed, LoanNotFound, LoanOpenFailed

router = APIRouter(prefix="/v1/loans", tags=["loans"])

# Loan ids are uuid5(key) in this namespace: the same Idempotency-Key always names the same
# loan workflow, so a retried or racing request meets the one that came first.
LOAN_ID_NAMESPACE = uuid.UUID("5f0c7a8e-3b7e-4f8e-9a53-6c1d2b9e4a10")
MAX_KEY_LENGTH = 255

REFUSAL_STATUS: dict[str, int] = {
    "insufficient_liquidity": 409,
    "credit_declined": 422,
    "pool_frozen": 423,
    "pool_unknown": 503,
    "open_deadline_passed": 503,
}

ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorOut} for s in (400, 401, 403, 404, 409, 422, 423, 429, 503)
}
NOT_YOURS = "a borrower token acts only on its own account's loans"
OPEN_MARGIN_S = 30  # admission counts a loan from before its reservation exists


def loan_id_for(idempotency_key: str, caller: Principal | None = None) -> str:
    """Platform keys share one key space (a rotated key retrying a request meets the loan the
    old key opened); a borrower's wallet has its own, so no wallet can collide with, or learn
    the loan id of, a request of someone else."""
    scoped = (
        idempotency_key
        if caller is None or caller.account is None
        else (f"account:{caller.account}:{idempotency_key}")
    )
    return str(uuid.uuid5(LOAN_ID_NAMESPACE, scoped))


def require_idempotency_key(
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> str:
    """Resolved before the body is validated, so a missing key is always a 400."""
    if idempotency_key is None or not idempotency_key.strip():
        raise ApiError(
            400,
            "idempotency_key_required",
            "send an Idempotency-Key header (e.g. a fresh UUID per loan request)",
        )
    key = idempotency_key.strip()
    if len(key) > MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
        raise ApiError(
            400,
            "invalid_idempotency_key",
            f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} printable ASCII characters",
        )
    return key


def _temporal_down(exc: Exception) -> ApiError:
    return ApiError(
        503,
        "temporal_unavailable",
        "the saga engine did not answer; retry with the same Idempotency-Key",
        {"reason": type(exc).__name__},
        {"Retry-After": "2"},
    )


def _valid_loan_id(loan_id: str) -> str:
    try:
        return str(uuid.UUID(loan_id))
    except ValueError:
        raise ApiError(404, "loan_not_found", "no such loan", {"loan_id": loan_id[:64]}) from None


async def _view_or_404(svc: Services, client: Client, loan_id: str) -> LoanView:
    """The loan as its workflow last recorded it: served by Temporal with no worker running."""
    loan_id = _valid_loan_id(loan_id)
    settings = svc.settings
    try:
        view = await loan_client.recorded_view(
            client,
            loan_id,
            rpc_timeout=timedelta(seconds=settings.loan_read_timeout_seconds),
            fresh_wait=timedelta(seconds=settings.loan_read_fresh_wait_seconds),
        )
    except RPCError as exc:
        raise _temporal_down(exc) from exc
    if view is None:
        raise ApiError(404, "loan_not_found", "no such loan", {"loan_id": loan_id})
    bind(
        loan_id=view.loan_id,
        pool_id=view.pool_id,
        tx_hash=view.funding.tx_hash if view.funding else None,
    )
    return view


async def _view_for(
    caller: Principal, svc: Services, client: Client, loan_id: str, scope: str
) -> LoanView:
    """The loan, if this caller may act on it with `scope`'s rights."""
    if caller.account is None:
        require_scope(caller, scope)
        return await _view_or_404(svc, client, loan_id)
    try:
        view = await _view_or_404(svc, client, loan_id)
    except ApiError as exc:
        if exc.status != 404:
            raise
        raise forbidden(None, NOT_YOURS) from None
    if view.borrower != caller.account:
        raise forbidden(None, NOT_YOURS)
    return view


def _may_open(caller: Principal, svc: Services, body: LoanRequest) -> None:
    if caller.account is None:
        require_scope(caller, LOANS_WRITE)
        return
    if not svc.settings.wallet_opens_enabled:
        raise forbidden(
            LOANS_WRITE,
            "borrower tokens may not open loans here (the platform "
            "opens them): this needs an API key with `loans:write`",
        )
    if body.borrower != caller.account:
        raise forbidden(None, "a borrower token opens loans only for its own account")


def _refusal_response(refusal: LoanRefusal, headers: dict[str, str]) -> JSONResponse:
    status = REFUSAL_STATUS.get(refusal.code, 422)
    details = {"loan_id": refusal.loan_id, **amounts_as_decimal(refusal.details)}
    if refusal.code == "pool_unknown":
        headers = {**headers, "Retry-After": "10"}
    return JSONResponse(
        error_body(refusal.code, refusal.message, details), status_code=status, headers=headers
    )


@router.post(
    "",
    status_code=201,
    response_model=LoanCreated,
    responses=ERRORS,
    summary="Reserve pool liquidity and get the funding transaction to sign",
)
async def open_loan(
    caller: CallerDep,
    key: Annotated[str, Depends(require_idempotency_key)],
    body: LoanRequest,
    svc: ServicesDep,
    client: TemporalDep,
) -> JSONResponse:
    _may_open(caller, svc, body)
    creditline = svc.settings.pools.get(body.pool_id)
    if creditline is None:
        raise ApiError(
            422, "pool_not_found", "no such pool is configured", {"pool_id": body.pool_id}
        )
    if body.ttl_seconds is not None and body.ttl_seconds > svc.settings.reservation_ttl_seconds:
        raise ApiError(
            422,
            "validation_error",
            "ttl_seconds exceeds the server's maximum",
            {"max_ttl_seconds": svc.settings.reservation_ttl_seconds},
        )

    base_loan_id = loan_id_for(key, caller)
    attempts = KeyAttempts(svc.redis, prefix=svc.settings.ledger_prefix)
    attempt = await attempts.current(base_loan_id)
    loan_id = attempt_loan_id(base_loan_id, attempt, LOAN_ID_NAMESPACE)
    bind(loan_id=loan_id, pool_id=body.pool_id, workflow_id=loan_client.loan_workflow_id(loan_id))
    fingerprint = body.fingerprint()
    nonce = uuid.uuid4().hex
    wait_s = svc.settings.open_wait_seconds
    loan = LoanInput(
        open_deadline=datetime.now(UTC) + timedelta(seconds=wait_s),
        loan_id=loan_id,
        pool_id=body.pool_id,
        creditline_id=creditline,
        terms=body.terms(),
        fingerprint=fingerprint,
        ttl_seconds=body.ttl_seconds,
        timeouts=loan_client.saga_timeouts(svc.settings),
    )
    hold_s = (
        (body.ttl_seconds or svc.settings.reservation_ttl_seconds)
        + svc.settings.settlement_grace_seconds
        + OPEN_MARGIN_S
    )
    # Rate limits and unsigned caps of the key and the borrower: 429/409 before any reservation.
    counted = await svc.squatting.admit(client, caller, body.borrower, loan_id, hold_s)
    try:
        async with asyncio.timeout(wait_s):
            result = await loan_client.open_loan(
                client,
                task_queue=svc.settings.task_queue,
                loan=loan,
                request=OpenLoan(fingerprint=fingerprint, request_nonce=nonce),
                idempotency_key=attempt_update_id(key, attempt),
                rpc_timeout=timedelta(seconds=wait_s + 1),
            )
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError) as exc:
        # No worker took the open in time (the loan may have started: it refuses by itself if
        # its open steps begin after the deadline). Still counted by admission: its outcome is
        # unknown here; the retry with the same key learns it.
        raise ApiError(
            503,
            "loan_open_pending",
            f"the loan was not opened within {wait_s:g} s; retry with the same "
            "Idempotency-Key to get its outcome",
            {"loan_id": loan_id, "waited_seconds": wait_s},
            {"Retry-After": str(max(1, math.ceil(wait_s / 2)))},
        ) from exc
    except LoanClosed as exc:
        await svc.squatting.refused(loan_id, counted)
        raise ApiError(
            409,
            "loan_closed",
            "this Idempotency-Key names a loan that has ended",
            {"loan_id": loan_id},
        ) from exc
    except LoanOpenFailed as exc:
        await svc.squatting.refused(loan_id, counted)
        raise ApiError(
            503,
            "loan_open_failed",
            "the loan could not be opened for an "
            "infrastructure reason; nothing is reserved. Retry with a new "
            "Idempotency-Key",
            {"loan_id": loan_id},
        ) from exc
    except RPCError as exc:
        raise _temporal_down(exc) from exc

    if result.fingerprint != fingerprint:
        await svc.squatting.refused(loan_id, counted)  # the loan is another request's
        raise ApiError(
            422,
            "idempotency_key_reused",
            "this Idempotency-Key was used with a different request body",
            {"loan_id": loan_id},
        )
    headers = {"Location": f"/v1/loans/{loan_id}"}
    if result.request_nonce != nonce:
        headers["Idempotent-Replayed"] = "true"
    if isinstance(result, LoanOffer):
        await svc.squatting.offered(loan_id, body.borrower, caller, result.funding.expires_at)
        bind(tx_hash=result.funding.tx_hash)
        created = LoanCreated.of(result)
        return JSONResponse(created.model_dump(mode="json"), status_code=201, headers=headers)
    await svc.squatting.refused(loan_id, counted)
    if result.code in TRANSIENT_CODES:  # not the key's answer: its next request tries afresh
        await attempts.refused_transiently(base_loan_id, attempt)
    return _refusal_response(result, headers)


@router.get("/{loan_id}", response_model=LoanOut, responses=ERRORS, summary="A loan's state")
async def get_loan(
    caller: CallerDep, loan_id: str, svc: ServicesDep, client: TemporalDep
) -> LoanOut:
    return LoanOut.of(await _view_for(caller, svc, client, loan_id, LOANS_READ))


def _check_envelope(svc: Services, view: LoanView, signed_xdr: str) -> str:
    """The hash of an envelope that is the loan's funding transaction, signed by its borrower."""
    passphrase = svc.settings.network_passphrase
    try:
        envelope = decode_envelope(signed_xdr)
    except ValueError as exc:
        raise ApiError(
            400, "xdr_mismatch", "signed_xdr is not a transaction envelope", {"reason": "malformed"}
        ) from exc
    tx_hash = envelope.hash(passphrase).hex()
    assert view.funding is not None
    if tx_hash != view.funding.tx_hash:
        raise ApiError(
            400,
            "xdr_mismatch",
            "the envelope is not this loan's funding transaction",
            {
                "reason": "hash_differs",
                "expected_tx_hash": view.funding.tx_hash,
                "tx_hash": tx_hash,
            },
        )
    if not envelope.signed_by(view.borrower, passphrase):
        raise ApiError(
            400,
            "xdr_mismatch",
            "the envelope carries no valid borrower signature",
            {"reason": "not_signed_by_borrower", "borrower": view.borrower},
        )
    return tx_hash


@router.post(
    "/{loan_id}/submit",
    status_code=202,
    response_model=LoanOut,
    responses=ERRORS,
    summary="Relay the borrower-signed funding transaction to the chain",
)
async def submit_loan(
    caller: CallerDep,
    loan_id: str,
    body: SubmitRequest,
    svc: ServicesDep,
    client: TemporalDep,
) -> JSONResponse:
    view = await _view_for(caller, svc, client, loan_id, LOANS_WRITE)
    if view.funding is None or view.state not in (
        LoanState.RESERVED,
        LoanState.SUBMITTED,
        LoanState.FUNDED,
    ):
        raise ApiError(
            409,
            "loan_not_reserved",
            "this loan holds no reservation to fund",
            {"state": view.state.value},
        )
    if view.funding.mode == "sponsored":
        return await _submit_sponsored(svc, client, view, body)
    if body.signed_xdr is None:
        raise ApiError(
            400,
            "wrong_funding_mode",
            "this loan is funded by the borrower's own transaction: send signed_xdr",
            {"mode": view.funding.mode},
        )
    tx_hash = _check_envelope(svc, view, body.signed_xdr)
    if view.state is not LoanState.RESERVED:  # already relayed: same hash, same answer
        await svc.squatting.signed_or_gone(view.loan_id, view.borrower)
        return JSONResponse(LoanOut.of(view).model_dump(mode="json"), status_code=202)

    try:
        sent = await svc.chain.submit(body.signed_xdr)
    except ChainRefusal as exc:
        raise ApiError(
            422,
            "tx_rejected",
            "the chain refused the transaction",
            {"reason": exc.reason.value, "detail": exc.detail[:500], "tx_hash": tx_hash},
        ) from exc
    except ChainUnavailable as exc:
        raise ApiError(
            503,
            "chain_unavailable",
            "the chain RPC did not answer; retry",
            {"reason": type(exc).__name__},
            {"Retry-After": "2"},
        ) from exc
    if sent.status == "try_again_later":
        raise ApiError(
            503, "chain_busy", "the chain asked to retry later", {}, {"Retry-After": "2"}
        )
    if sent.status == "error" and not await _landed_already(svc, sent.reason, tx_hash):
        reason = sent.reason.value if sent.reason else "unknown"
        status = 409 if reason in ("too_late", "bad_seq") else 422
        raise ApiError(
            status,
            "tx_rejected",
            "the chain refused the transaction",
            {"reason": reason, "detail": sent.detail[:500], "tx_hash": tx_hash},
        )

    try:
        await loan_client.signal_submitted(client, view.loan_id, Submitted(tx_hash=tx_hash))
    except (LoanClosed, LoanNotFound) as exc:
        raise ApiError(
            409,
            "loan_closed",
            "the loan ended before the submission was recorded",
            {"tx_hash": tx_hash},
        ) from exc
    except RPCError as exc:
        raise _temporal_down(exc) from exc
    await svc.squatting.signed_or_gone(view.loan_id, view.borrower)
    fresh = await _view_or_404(svc, client, view.loan_id)
    return JSONResponse(LoanOut.of(fresh).model_dump(mode="json"), status_code=202)


async def _landed_already(svc: Services, reason: FailureReason | None, tx_hash: str) -> bool:
    """A bad_seq for this very transaction: an earlier relay that timed out (the RPC stalled)
    may have reached the chain after all, its sequence is then spent by it. If it is in a
    ledger the resend is answered as relayed; the loan follows it like any submission."""
    if reason is not FailureReason.BAD_SEQ:
        return False
    try:
        status = await svc.chain.transaction(tx_hash)
    except ChainUnavailable:
        return False
    return status.status == "success"


async def _give_up(svc: Services, client: Client, view: LoanView, reason: str) -> None:
    """The signed entry can never fund this loan: release its reservation now (a cancel)."""
    try:
        await loan_client.signal_cancel(client, view.loan_id, Cancel(reason=reason))
    except (LoanClosed, LoanNotFound):
        return
    except RPCError as exc:
        raise _temporal_down(exc) from exc
    await svc.squatting.signed_or_gone(view.loan_id, view.borrower)


async def _submit_sponsored(
    svc: Services, client: Client, view: LoanView, body: SubmitRequest
) -> JSONResponse:
    """Check the entry is the offered one signed by the borrower, then a channel account
    assembles, signs and submits the transaction (channels/pool.py); its hash is mapped for the
    watcher before it is sent. A refused entry releases the reservation; no free channel is a
    503 that keeps it (retry after Retry-After)."""
    funding = view.funding
    assert funding is not None
    if body.signed_auth_entry is None:
        raise ApiError(
            400,
            "wrong_funding_mode",
            "this loan is sponsored: send signed_auth_entry, the offered entry signed",
            {"mode": "sponsored"},
        )
    if svc.channels is None or svc.tx_index is None:
        raise ApiError(
            503,
            "sponsored_unavailable",
            "this API process has no channel accounts (FUNDING_MODE=sponsored, CHANNEL_SECRETS)",
            {},
            {"Retry-After": "30"},
        )
    reserved = view.state is LoanState.RESERVED
    try:
        entry = sponsored.check_signed_entry(
            funding.auth_entry,
            body.signed_auth_entry,
            view.borrower,
            svc.settings.network_passphrase,
        )
    except sponsored.EntryMismatch as exc:
        if reserved:
            await _give_up(svc, client, view, f"signed entry refused: {exc.reason}")
        raise ApiError(
            400,
            "auth_entry_mismatch",
            f"{exc}; the reservation is released" if reserved else str(exc),
            {"reason": exc.reason, "released": reserved},
        ) from exc
    if not reserved:  # already relayed: the same entry gets the same answer
        await svc.squatting.signed_or_gone(view.loan_id, view.borrower)
        return JSONResponse(LoanOut.of(view).model_dump(mode="json"), status_code=202)
    try:
        latest = await svc.chain.latest_ledger()
    except ChainUnavailable as exc:
        raise ApiError(
            503,
            "chain_unavailable",
            "the chain RPC did not answer; retry",
            {},
            {"Retry-After": "2"},
        ) from exc
    if latest >= funding.valid_until_ledger:  # the next ledger is past the entry's last one
        await _give_up(svc, client, view, "signed entry expired")
        raise ApiError(
            409,
            "auth_entry_expired",
            "the authorization entry expired before it was submitted; the reservation is released",
            {"valid_until_ledger": funding.valid_until_ledger, "latest_ledger": latest},
        )
    guard = f"{svc.settings.ledger_prefix}:submitting:{{{view.loan_id}}}"
    if not await svc.redis.set(guard, "1", nx=True, ex=30):
        raise ApiError(
            409,
            "submit_in_progress",
            "another submission of this loan is in progress",
            {},
            {"Retry-After": "1"},
        )
    recorded: list[str] = []
    tx_index = svc.tx_index

    async def build(channel: Keypair, sequence: int) -> tuple[str, str]:
        return await svc.chain.assemble_sponsored(
            channel=channel, sequence=sequence, signed_entry=entry, max_time=funding.expires_at
        )

    async def record(tx_hash: str) -> None:
        recorded.append(tx_hash)
        await tx_index.remap(
            TxRef(
                tx_hash=tx_hash,
                loan_id=view.loan_id,
                pool_id=view.pool_id,
                expires_at=funding.expires_at,
            )
        )

    try:
        sent = await svc.channels.send(build, max_time=funding.expires_at, record=record)
    except ChannelsBusy as exc:
        raise ApiError(
            503,
            "channels_busy",
            "every channel account has a transaction in flight; the reservation is kept, retry",
            {"reason": str(exc)},
            {"Retry-After": str(exc.retry_after)},
        ) from exc
    except ChainRefusal as exc:
        await _give_up(svc, client, view, f"the chain refused the transaction: {exc.reason}")
        raise ApiError(
            422,
            "tx_rejected",
            "the chain refused the transaction; the reservation is released",
            {"reason": exc.reason.value, "detail": exc.detail[:500]},
        ) from exc
    except ChainUnavailable as exc:
        if recorded:  # it may have reached the chain: the loan follows that hash
            await _signal_submitted(client, view.loan_id, recorded[-1])
        raise ApiError(
            503,
            "chain_unavailable",
            "the chain RPC did not answer; retry",
            {"reason": type(exc).__name__},
            {"Retry-After": "2"},
        ) from exc
    finally:
        await svc.redis.delete(guard)
    await _signal_submitted(client, view.loan_id, sent.tx_hash)
    await svc.squatting.signed_or_gone(view.loan_id, view.borrower)
    fresh = await _view_or_404(svc, client, view.loan_id)
    return JSONResponse(LoanOut.of(fresh).model_dump(mode="json"), status_code=202)


async def _signal_submitted(client: Client, loan_id: str, tx_hash: str) -> None:
    try:
        await loan_client.signal_submitted(client, loan_id, Submitted(tx_hash=tx_hash))
    except (LoanClosed, LoanNotFound) as exc:
        raise ApiError(
            409,
            "loan_closed",
            "the loan ended before the submission was recorded",
            {"tx_hash": tx_hash},
        ) from exc
    except RPCError as exc:
        raise _temporal_down(exc) from exc


@router.post(
    "/{loan_id}/cancel",
    status_code=202,
    response_model=LoanOut,
    responses=ERRORS,
    summary="Give up on a loan; its reservation is released",
)
async def cancel_loan(
    caller: CallerDep,
    loan_id: str,
    svc: ServicesDep,
    client: TemporalDep,
    body: Annotated[CancelRequest | None, Body()] = None,
) -> JSONResponse:
    view = await _view_for(caller, svc, client, loan_id, LOANS_WRITE)
    if view.state in TERMINAL_STATES:
        raise ApiError(
            409, "loan_closed", "the loan has already ended", {"state": view.state.value}
        )
    reason = body.reason if body else "cancelled by the borrower"
    try:
        await loan_client.signal_cancel(client, view.loan_id, Cancel(reason=reason))
    except (LoanClosed, LoanNotFound) as exc:
        raise ApiError(409, "loan_closed", "the loan has already ended", {}) from exc
    except RPCError as exc:
        raise _temporal_down(exc) from exc
    await svc.squatting.signed_or_gone(view.loan_id, view.borrower)
    fresh = await _view_or_404(svc, client, view.loan_id)
    return JSONResponse(LoanOut.of(fresh).model_dump(mode="json"), status_code=202)
