"""LoanWorkflow: one loan's reservation saga (workflow id `loan-<loan_id>`).

Open (assess -> reserve -> build) runs inside the update-with-start round trip, so the caller gets
the XDR or a typed refusal in one call. The three open steps are *local* activities: each is one
short, idempotent call (pure policy, one Redis script keyed by loan id, one RPC simulation), and
as local activities they run in the same workflow task as the update instead of costing a
server round trip each, which is what keeps time-to-XDR close to the engine's floor. Their
at-least-once re-execution after a worker crash is harmless (reserve returns the original grant).

After the offer the workflow waits for `settled` / `settlement_failed` / `cancel`, or for the
reservation's hold (the transaction's max_time plus a grace) to pass, and then commits or releases.
Commit and release are regular activities retried until they succeed: they are the saga's
obligations and may outlast a Redis outage. The release also runs when the workflow is cancelled
by a request (never on cache eviction, which is not a cancel of the loan).

Everything here is deterministic: time from `workflow.now()`, all I/O in activities.

No `from __future__ import annotations` here: the sandbox re-imports this module for every new
workflow run and the SDK reads the handlers' type hints each time; string annotations would have
to be compiled and evaluated again on every import.
"""

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeUpdate
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.loan import (
        AssessRequest,
        BuildRequest,
        CommitRequest,
        LoanActivities,
        ReleaseCause,
        ReleaseReason,
        ReleaseRequest,
        ReserveRequest,
        WatchRequest,
    )
    from chain.types import FailureReason
    from core.models import (
        TERMINAL_STATES,
        Cancel,
        Funding,
        HistoryEntry,
        LoanInput,
        LoanOffer,
        LoanRefusal,
        LoanState,
        LoanView,
        OpenLoan,
        OpenResult,
        RefusalCode,
        Settled,
        SettlementFailed,
        Submitted,
    )
    from core.money import format_stroops
    from liquidity.types import (
        AlreadyTerminal,
        BorrowerLimitExceeded,
        Frozen,
        Insufficient,
        Reserved,
        ReserveResult,
        UnknownPool,
    )

    from .activity_failures import ACTIVITY_FAILURES, failure_text
    from .loan_memo import initial_view, memo_fields
    from .search_attributes import (
        AMOUNT_STROOPS,
        BORROWER,
        EXPIRES_AT,
        LOAN_STATE,
        POOL_ID,
        int64,
    )

# The Temporal UI's current details, in words (the history's details carry stroops).
_STATE_WORDS = {
    LoanState.ASSESSING: "checking the credit policy and reserving the pool's liquidity",
    LoanState.RESERVED: "liquidity reserved; waiting for the borrower's signed transaction",
    LoanState.SUBMITTED: "signed transaction relayed; waiting for the chain",
    LoanState.FUNDED: "settled on chain; the reservation is committed",
}

# workflow.patched id of the memo writes (the view recorded for reads without a worker).
_MEMO_PATCH = "loan-view-memo"

# Open steps: bounded (LoanInput.timeouts, from settings), because a caller is waiting on the
# HTTP request.
_OPEN_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=2)
)
# Bounds of the submission watch and the post-expiry chain check (not caller-facing).
_WATCH_START_TO_CLOSE = timedelta(seconds=10)
# Obligations (commit / release): retried until they succeed, each attempt bounded.
_OBLIGATION_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30)
)
# The post-expiry chain check gives up after a while: by then the transaction cannot land any more.
_CHECK_SCHEDULE_TO_CLOSE = timedelta(minutes=5)


@workflow.defn
class LoanWorkflow:
    @workflow.init
    def __init__(self, loan: LoanInput) -> None:
        self._loan = loan
        self._view = initial_view(loan)
        self._offer: LoanOffer | None = None
        self._refusal: LoanRefusal | None = None
        self._open_error: str | None = None
        self._hold_until_ms = 0
        self._reserve_attempted = False
        self._submitted: str | None = None
        self._settlement: Settled | SettlementFailed | None = None
        self._cancel: Cancel | None = None
        self._submitted_at: datetime | None = None
        self._early_settlements: list[Settled | SettlementFailed] = []
        self._open_measured = False
        self._finish_counted = False
        # Search attribute values the server already holds for this run, by name. The starter
        # sets the static ones with the start (workflows/loan_client.py), so state changes upsert
        # only what changed; a run started without them (e.g. one recorded before) gets them
        # with its first state change.
        self._indexed: dict[str, Any] = {
            pair.key.name: pair.value for pair in workflow.info().typed_search_attributes
        }
        # Likewise the memo (workflows/loan_memo.py): the starter records the initial view.
        self._memoized: dict[str, Any] = dict(workflow.memo())
        bounds = loan.timeouts
        self._open_step = timedelta(seconds=bounds.open_step_seconds)
        self._open_budget = timedelta(seconds=bounds.open_budget_seconds)
        self._obligation_attempt = timedelta(seconds=bounds.obligation_attempt_seconds)

    # ---- run ---------------------------------------------------------------------------------

    @workflow.run
    async def run(self, loan: LoanInput) -> LoanView:
        self._set_state(LoanState.ASSESSING, "loan opened")
        try:
            if await self._open():
                await self._settle()
        except asyncio.CancelledError:
            if workflow.cancellation_reason() is None:
                raise  # cache eviction: not a decision about the loan
            if self._open_error is None and self._offer is None and self._refusal is None:
                self._open_error = "the loan was cancelled while opening"
            if self._reserve_attempted and self._view.state not in TERMINAL_STATES:
                await self._release(
                    ReleaseReason(ReleaseCause.CANCELLED), LoanState.CANCELLED, "workflow cancelled"
                )
            await workflow.wait_condition(workflow.all_handlers_finished)
            raise
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._view

    async def _open(self) -> bool:
        """assess -> reserve -> build; True when an offer was made."""
        loan, terms = self._loan, self._loan.terms
        if self._refuse_if_caller_gone():
            return False
        try:
            assessment = await workflow.execute_local_activity_method(
                LoanActivities.assess,
                AssessRequest(terms=terms),
                start_to_close_timeout=self._open_step,
                schedule_to_close_timeout=self._open_budget,
                retry_policy=_OPEN_RETRY,
            )
            if assessment.reasons:
                details: dict[str, object] = {"reasons": assessment.reasons}
                if assessment.codes:  # typed: the first failed check, and all of them
                    details.update(reason=assessment.codes[0], codes=assessment.codes)
                self._refuse("credit_declined", "credit declined", details)
                return False

            if self._refuse_if_caller_gone():
                return False
            self._reserve_attempted = True
            outcome = await workflow.execute_local_activity_method(
                LoanActivities.reserve,
                ReserveRequest(
                    pool_id=loan.pool_id,
                    loan_id=loan.loan_id,
                    borrower=terms.borrower,
                    amount=terms.funded_amount,
                    ttl_seconds=loan.ttl_seconds,
                ),
                start_to_close_timeout=self._open_step,
                schedule_to_close_timeout=self._open_budget,
                retry_policy=_OPEN_RETRY,
            )
            reserved = outcome.result
            if not isinstance(reserved, Reserved):
                self._refuse_reservation(reserved)
                return False

            self._hold_until_ms = reserved.hold_until_ms
            built = await workflow.execute_local_activity_method(
                LoanActivities.build_funding,
                BuildRequest(
                    loan_id=loan.loan_id,
                    pool_id=loan.pool_id,
                    creditline_id=loan.creditline_id,
                    terms=terms,
                    max_time=reserved.expires_at_ms // 1000,
                ),
                start_to_close_timeout=self._open_step,
                schedule_to_close_timeout=self._open_budget,
                retry_policy=_OPEN_RETRY,
            )
            if built.funding is None and built.sponsored is None:
                await self._release(
                    ReleaseReason(ReleaseCause.BUILD_REFUSED), None, "funding transaction not built"
                )
                code: RefusalCode
                match built.refusal_reason:
                    case FailureReason.INSUFFICIENT_LIQUIDITY:
                        code = "insufficient_liquidity"
                    case _:  # the contract's other checks, the saga's own (BuildRefusal)
                        code = "credit_declined"
                reason = f"the funding transaction cannot be built: {built.refusal_reason}"
                if built.refusal_detail:
                    reason += f" ({built.refusal_detail})"
                # `reason` is the typed one (vendor_not_active, insufficient_reputation,
                # exposure_limit_exceeded, ...): the contract check the simulation failed
                self._refuse(
                    code,
                    reason,
                    {
                        "reasons": [reason],
                        "reason": built.refusal_reason,
                        "chain": built.refusal_reason,
                    },
                )
                return False
        except ACTIVITY_FAILURES as err:
            # An infrastructure failure outlasted the bounded open retries (or the loan was
            # cancelled meanwhile): give back whatever may have been reserved and fail the
            # update, the caller may try again later. Caught whatever form the failure takes,
            # which differs between the first run and a replay (workflows/activity_failures.py).
            self._open_error = f"the loan could not be opened: {failure_text(err)}"
            if self._reserve_attempted:
                await self._release(ReleaseReason(ReleaseCause.OPEN_FAILED), None, "open failed")
            self._view.failure_reason = "unavailable"
            self._set_state(LoanState.FAILED, self._open_error)
            return False

        if built.sponsored is not None:
            # sponsored: the borrower signs the authorization entry; the hash of the channel's
            # transaction is known once the API submits it (the `submitted` signal)
            entry = built.sponsored
            funding = Funding(
                xdr="",
                tx_hash="",
                expires_at=entry.expires_at,
                mode="sponsored",
                auth_entry=entry.auth_entry,
                valid_until_ledger=entry.valid_until_ledger,
            )
            offered = f"auth entry valid through ledger {entry.valid_until_ledger}"
        else:
            assert built.funding is not None
            funding = Funding(
                xdr=built.funding.xdr,
                tx_hash=built.funding.tx_hash,
                expires_at=built.funding.max_time,
            )
            offered = f"tx {funding.tx_hash}"
        self._view.funding = funding
        self._view.reserved_amount = reserved.amount
        self._offer = LoanOffer(
            loan_id=loan.loan_id,
            state=LoanState.RESERVED,
            funding=funding,
            reserved_amount=reserved.amount,
            fingerprint=loan.fingerprint,
            request_nonce="",
        )
        self._set_state(LoanState.RESERVED, f"reserved {reserved.amount}, {offered}")
        return True

    async def _settle(self) -> None:
        """Wait for the outcome, then commit or release."""
        remaining_ms = self._hold_until_ms - int(workflow.now().timestamp() * 1000)
        try:
            await workflow.wait_condition(
                self._decided, timeout=timedelta(milliseconds=max(remaining_ms, 1))
            )
        except TimeoutError:
            await self._expire()
            return

        settlement = self._settlement
        if isinstance(settlement, Settled):
            await self._commit(settlement.ledger, f"settled in ledger {settlement.ledger}")
        elif isinstance(settlement, SettlementFailed):
            self._view.failure_reason = settlement.reason
            await self._release(
                ReleaseReason(ReleaseCause.SETTLEMENT_FAILED, settlement.reason),
                LoanState.FAILED,
                f"transaction failed on chain: {settlement.reason} {settlement.detail}".strip(),
            )
        else:
            assert self._cancel is not None
            await self._release(
                ReleaseReason(ReleaseCause.CANCELLED), LoanState.CANCELLED, self._cancel.reason
            )

    async def _expire(self) -> None:
        """The hold has passed, so the transaction can no longer land: ask the chain whether it
        did before releasing (the watcher may be lagging or down)."""
        assert self._view.funding is not None
        tx_hash = self._view.funding.tx_hash
        if not tx_hash:  # sponsored and never submitted: nothing can land
            await self._release(
                ReleaseReason(ReleaseCause.EXPIRED),
                LoanState.EXPIRED,
                "no signed entry before the hold expired",
            )
            return
        try:
            status = await workflow.execute_activity_method(
                LoanActivities.settlement_status,
                tx_hash,
                start_to_close_timeout=_WATCH_START_TO_CLOSE,
                schedule_to_close_timeout=_CHECK_SCHEDULE_TO_CLOSE,
                retry_policy=_OBLIGATION_RETRY,
            )
        except ACTIVITY_FAILURES:
            status = None
        if status is not None and status.status == "success" and status.ledger is not None:
            await self._commit(status.ledger, f"found settled in ledger {status.ledger} at expiry")
            return
        if status is not None and status.status == "failed":
            self._view.failure_reason = str(status.reason or "unknown")
            await self._release(
                ReleaseReason(ReleaseCause.SETTLEMENT_FAILED, self._view.failure_reason),
                LoanState.FAILED,
                f"transaction failed on chain: {self._view.failure_reason}",
            )
            return
        await self._release(
            ReleaseReason(ReleaseCause.EXPIRED),
            LoanState.EXPIRED,
            "not settled before the hold expired",
        )

    def _decided(self) -> bool:
        if self._settlement is not None:
            return True
        return self._cancel is not None and self._view.state == LoanState.RESERVED

    # ---- obligations -------------------------------------------------------------------------

    async def _commit(self, ledger: int, detail: str) -> None:
        submitted = self._submitted_at
        result = await workflow.execute_activity_method(
            LoanActivities.commit,
            CommitRequest(
                pool_id=self._loan.pool_id,
                loan_id=self._loan.loan_id,
                ledger=ledger,
                submitted_at_ms=int(submitted.timestamp() * 1000) if submitted else None,
            ),
            start_to_close_timeout=self._obligation_attempt,
            retry_policy=_OBLIGATION_RETRY,
        )
        self._view.settled_ledger = ledger
        self._finish_counted = True  # by the commit activity, with the settlement duration
        self._set_state(LoanState.FUNDED, f"{detail}; ledger commit: {result.outcome}")

    async def _release(self, reason: ReleaseReason, state: LoanState | None, detail: str) -> None:
        result = await workflow.execute_activity_method(
            LoanActivities.release,
            ReleaseRequest(
                pool_id=self._loan.pool_id,
                loan_id=self._loan.loan_id,
                reason=reason.audit_text(),
                finish_state=state.value if state is not None else None,
            ),
            start_to_close_timeout=self._obligation_attempt,
            retry_policy=_OBLIGATION_RETRY,
        )
        if result.outcome == "already_committed" or state is not None:
            self._finish_counted = True  # by the release activity
        if result.outcome == "already_committed":
            # The chain settled first (the watcher committed it): the loan is funded, whatever
            # made us give up on it.
            self._view.failure_reason = None
            self._set_state(LoanState.FUNDED, f"{detail}, but the funding had already settled")
        elif state is not None:
            self._set_state(state, f"{detail}; ledger release: {result.outcome}")

    # ---- refusals ----------------------------------------------------------------------------

    def _refuse(self, code: RefusalCode, message: str, details: dict[str, object]) -> None:
        self._refusal = LoanRefusal(
            loan_id=self._loan.loan_id,
            code=code,
            message=message,
            details=details,
            fingerprint=self._loan.fingerprint,
            request_nonce="",
        )
        self._view.refusal = self._refusal
        self._set_state(LoanState.REFUSED, f"{code}: {message}")

    def _refuse_if_caller_gone(self) -> bool:
        """Refuse instead of reserving once the caller's deadline has passed: the API stopped
        waiting (503, no worker answered in time), so an offer made now would hold liquidity
        for nobody. Workflow time against a deadline in the input: the same on replay."""
        deadline = self._loan.open_deadline
        now = workflow.now()
        if deadline is None or now <= deadline:
            return False
        self._refuse(
            "open_deadline_passed",
            "the open started after its caller had stopped waiting; nothing is reserved",
            {
                "deadline": deadline.isoformat(),
                "late_by_ms": int((now - deadline).total_seconds() * 1000),
            },
        )
        return True

    def _refuse_reservation(self, result: ReserveResult) -> None:
        match result:
            case Insufficient(available=available, required=required, shortage=shortage):
                self._refuse(
                    "insufficient_liquidity",
                    "the pool does not have enough available liquidity",
                    {"available": available, "required": required, "shortage": shortage},
                )
            case Frozen(reason=reason):
                self._refuse("pool_frozen", "the pool is frozen", {"reason": reason})
            case UnknownPool(reason=reason):
                # reason "failover" / "not_replicated": the ledger could not make the grant
                # durable; it gave it back (fail closed), a retry with a new key may succeed.
                self._refuse(
                    "pool_unknown",
                    "the pool is not known to the reservation ledger",
                    {"reason": reason} if reason else {},
                )
            case BorrowerLimitExceeded(exposure=exposure, required=required, limit=limit):
                reason = "borrower exposure limit exceeded"
                self._refuse(
                    "credit_declined",
                    reason,
                    {
                        "reasons": [reason],
                        "reason": "borrower_limit_exceeded",
                        "exposure": exposure,
                        "required": required,
                        "limit": limit,
                    },
                )
            case AlreadyTerminal(state=state):  # this loan id was settled by an earlier run
                self._refuse(
                    "credit_declined",
                    "this loan id was already used",
                    {"reasons": [f"reservation already {state}"]},
                )
            case Reserved():
                raise AssertionError("a reservation is not a refusal")

    # ---- interface ---------------------------------------------------------------------------

    @workflow.update
    async def open(self, request: OpenLoan) -> OpenResult:
        """The update id is the idempotency key; the server replays the first result for it."""
        await workflow.wait_condition(
            lambda: (
                self._offer is not None or self._refusal is not None or self._open_error is not None
            )
        )
        echo = {"fingerprint": request.fingerprint, "request_nonce": request.request_nonce}
        if self._offer is not None:
            return self._offer.model_copy(update=echo)
        if self._refusal is not None:
            return self._refusal.model_copy(update=echo)
        raise ApplicationError(
            self._open_error or "open failed", type="LoanOpenFailed", non_retryable=True
        )

    @workflow.signal
    async def submitted(self, signal: Submitted) -> None:
        funding = self._view.funding
        if (
            funding is not None
            and funding.mode == "sponsored"
            and not funding.tx_hash
            and self._view.state == LoanState.RESERVED
        ):
            # the channel's transaction carrying the borrower's signed entry is this loan's
            funding.tx_hash = signal.tx_hash
            for early in self._early_settlements:
                if early.tx_hash == signal.tx_hash and self._settlement is None:
                    self._settlement = early
        if not self._is_our_tx(signal.tx_hash) or self._submitted is not None:
            return
        if self._view.state != LoanState.RESERVED:
            return
        self._submitted = signal.tx_hash
        self._submitted_at = workflow.now()
        self._set_state(LoanState.SUBMITTED, f"signed transaction {signal.tx_hash} relayed")
        await workflow.execute_local_activity_method(
            LoanActivities.watch_submission,
            WatchRequest(tx_hash=signal.tx_hash, until=self._hold_until_ms // 1000 + 60),
            start_to_close_timeout=_WATCH_START_TO_CLOSE,
            retry_policy=_OBLIGATION_RETRY,
        )

    @workflow.signal
    def settled(self, signal: Settled) -> None:
        if self._awaiting_sponsored_hash():
            self._early_settlements.append(signal)
        elif self._is_our_tx(signal.tx_hash) and self._settlement is None:
            self._settlement = signal

    @workflow.signal
    def settlement_failed(self, signal: SettlementFailed) -> None:
        if self._awaiting_sponsored_hash():
            self._early_settlements.append(signal)
        elif self._is_our_tx(signal.tx_hash) and self._settlement is None:
            self._settlement = signal

    def _awaiting_sponsored_hash(self) -> bool:
        """The watcher maps a sponsored transaction's hash before the API's `submitted` signal
        reaches the loan, so its outcome may arrive first: kept until the hash is known."""
        funding = self._view.funding
        return funding is not None and funding.mode == "sponsored" and not funding.tx_hash

    @workflow.signal
    def cancel(self, signal: Cancel) -> None:
        if self._cancel is not None:
            return
        self._cancel = signal
        if self._view.state == LoanState.SUBMITTED:
            self._append_history(
                "cancel ignored: the signed transaction is already on its way to the chain"
            )
            self._record_view()

    @workflow.query
    def status(self) -> LoanView:
        return self._view

    # ---- state -------------------------------------------------------------------------------

    def _is_our_tx(self, tx_hash: str) -> bool:
        funding = self._view.funding
        return funding is not None and funding.tx_hash == tx_hash

    def _append_history(self, detail: str) -> None:
        self._view.history.append(
            HistoryEntry(at=workflow.now(), state=self._view.state, detail=detail)
        )

    def _set_state(self, state: LoanState, detail: str) -> None:
        """Every state change is recorded in the history and in the search attributes, shown
        in the Temporal UI (current details), logged, and counted. Current details, logs and
        SDK metrics are no commands (logs and metrics are skipped on replay), so they leave the
        history as it was."""
        self._view.state = state
        self._append_history(detail)
        workflow.set_current_details(self._current_details())
        self._observe(state, detail)
        wanted: list[SearchAttributeUpdate[Any]] = [
            LOAN_STATE.value_set(state.value),
            POOL_ID.value_set(self._loan.pool_id),
            BORROWER.value_set(self._loan.terms.borrower),
            AMOUNT_STROOPS.value_set(int64(self._loan.terms.funded_amount)),
        ]
        if self._view.funding is not None:
            expires = datetime.fromtimestamp(self._view.funding.expires_at, tz=UTC)
            wanted.append(EXPIRES_AT.value_set(expires))
        changed = [u for u in wanted if self._indexed.get(u.key.name) != u.value]
        if changed:
            workflow.upsert_search_attributes(changed)
            self._indexed.update((u.key.name, u.value) for u in changed)
        self._record_view()

    def _record_view(self) -> None:
        """The view in the memo, for reads without a worker (workflows/loan_memo.py). Only the
        keys that changed: the funding XDR is written once. Patched in: runs recorded before
        carry no memo commands and must replay without them."""
        if not workflow.patched(_MEMO_PATCH):
            return
        changed = {
            key: value
            for key, value in memo_fields(self._view).items()
            if self._memoized.get(key) != value
        }
        if changed:
            workflow.upsert_memo(changed)
            self._memoized.update(changed)

    # ---- what operators see ------------------------------------------------------------------

    def _current_details(self) -> str:
        """Markdown for the workflow page: the state in words and units, not stroops."""
        view = self._view
        lines = [f"**{view.state.value}**: {_STATE_WORDS.get(view.state, view.history[-1].detail)}"]
        if view.reserved_amount:
            lines.append(f"- reserved {format_stroops(view.reserved_amount)} units")
        if view.funding is not None:
            expires = datetime.fromtimestamp(view.funding.expires_at, tz=UTC)
            lines.append(f"- funding transaction `{view.funding.tx_hash}`")
            lines.append(f"- can land until {expires:%Y-%m-%d %H:%M:%S} UTC")
        if view.settled_ledger is not None:
            lines.append(f"- settled in ledger {view.settled_ledger}")
        if view.refusal is not None:
            lines.append(f"- refused: `{view.refusal.code}`")
        if view.failure_reason:
            lines.append(f"- failure: `{view.failure_reason}`")
        return "\n".join(lines)

    def _observe(self, state: LoanState, detail: str) -> None:
        funding = self._view.funding
        ids = {"loan_id": self._loan.loan_id, "pool_id": self._loan.pool_id, "state": state.value}
        if funding is not None:
            ids["tx_hash"] = funding.tx_hash
        workflow.logger.info("loan %s: %s", state.value, detail, extra=ids)
        if state == LoanState.ASSESSING:
            return
        meter = workflow.metric_meter()
        if not self._open_measured:
            self._open_measured = True
            if state == LoanState.RESERVED:
                outcome = "offered"
            elif self._refusal is not None:
                outcome = self._refusal.code
            else:
                outcome = state.value
            elapsed = (workflow.now() - workflow.info().start_time).total_seconds()
            meter.create_histogram_float(
                "loan_open_duration_seconds", "From the loan's start to its XDR or refusal", "s"
            ).record(max(elapsed, 0.0), {"outcome": outcome})
        if state in TERMINAL_STATES and not self._finish_counted:
            self._finish_counted = True
            meter.create_counter("loans_finished", "Loans that reached a terminal state").add(
                1, {"state": state.value}
            )
