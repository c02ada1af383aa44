"""Client-side helpers for LoanWorkflow, shared by the API, the watcher, the tests and the bench.

Not workflow code: this talks to the Temporal server. It turns Temporal's transport vocabulary
(WorkflowAlreadyStartedError, RPC NOT_FOUND) into the loan's own (LoanClosed, LoanNotFound), so
callers never depend on which Temporal call raised what.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from core.models import (
    Cancel,
    LoanInput,
    LoanState,
    LoanView,
    OpenLoan,
    OpenResult,
    SagaTimeouts,
    Settled,
    SettlementFailed,
    Submitted,
)
from core.money import format_stroops
from core.settings import Settings

from .loan import LoanWorkflow
from .loan_memo import initial_view, memo_fields, view_from_memo
from .search_attributes import initial_loan_attributes


class LoanNotFound(Exception):
    """No loan workflow with this id exists."""


class LoanClosed(Exception):
    """The loan's workflow has finished: it accepts no new request and no signal."""


class LoanOpenFailed(Exception):
    """The open step failed for an infrastructure reason (after bounded retries); nothing stays
    reserved. A new idempotency key is needed to try again."""


def saga_timeouts(settings: Settings) -> SagaTimeouts:
    """The activity bounds a loan started now runs with."""
    return SagaTimeouts(
        open_step_seconds=settings.open_step_timeout_seconds,
        open_budget_seconds=settings.open_budget_seconds,
        obligation_attempt_seconds=settings.obligation_attempt_timeout_seconds,
    )


def loan_workflow_id(loan_id: str) -> str:
    return f"loan-{loan_id}"


def _short(account: str) -> str:
    return account if len(account) <= 13 else f"{account[:5]}…{account[-4:]}"


def loan_summary(loan: LoanInput) -> str:
    """One line for the Temporal UI's workflow list: amounts in units, never stroops."""
    terms = loan.terms
    return (
        f"Loan {format_stroops(terms.funded_amount)} units from pool {_short(loan.pool_id)} "
        f"for {_short(terms.borrower)}"
    )


def loan_details(loan: LoanInput) -> str:
    """The workflow page's static details (Markdown): who, what, how it is paid back."""
    terms = loan.terms
    lines = [
        f"**Loan** `{loan.loan_id}`",
        "",
        f"- pool: `{loan.pool_id}` (creditline `{loan.creditline_id}`)",
        f"- borrower: `{terms.borrower}`",
        f"- vendor: `{terms.vendor}`",
        f"- total {format_stroops(terms.total_amount)} units, guarantee "
        f"{format_stroops(terms.guarantee_amount)}, funded by the pool "
        f"{format_stroops(terms.funded_amount)}",
        f"- repayment: {len(terms.repayment_schedule)} installment(s)",
    ]
    if loan.ttl_seconds:
        lines.append(f"- reservation asked for {loan.ttl_seconds} s")
    return "\n".join(lines)


async def open_loan(
    client: Client,
    *,
    task_queue: str,
    loan: LoanInput,
    request: OpenLoan,
    idempotency_key: str,
    rpc_timeout: timedelta | None = None,
) -> OpenResult:
    """Start the loan (or join the running one) and get its offer or refusal in one round trip.

    REJECT_DUPLICATE means a closed loan is never started again, so one key can never reserve
    twice; a repeat of the *same* key is answered by the server from the stored update result.
    """
    operation = WithStartWorkflowOperation(
        LoanWorkflow.run,
        loan,
        id=loan_workflow_id(loan.loan_id),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        search_attributes=initial_loan_attributes(
            pool_id=loan.pool_id,
            borrower=loan.terms.borrower,
            amount=loan.terms.funded_amount,
            state=LoanState.ASSESSING.value,
        ),
        static_summary=loan_summary(loan),
        static_details=loan_details(loan),
        # the view as of the start, readable before any worker has run the loan
        memo=memo_fields(initial_view(loan)),
    )
    try:
        return await client.execute_update_with_start_workflow(
            LoanWorkflow.open,
            request,
            start_workflow_operation=operation,
            id=idempotency_key,
            rpc_timeout=rpc_timeout,
        )
    except WorkflowAlreadyStartedError as exc:
        raise LoanClosed(f"loan {loan.loan_id} is closed") from exc
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        if isinstance(cause, ApplicationError) and cause.type == "LoanOpenFailed":
            raise LoanOpenFailed(cause.message) from exc
        raise
    finally:
        _discard_start_result(operation)


def _discard_start_result(operation: WithStartWorkflowOperation[LoanWorkflow, LoanView]) -> None:
    """The operation's handle future carries the start error too; retrieve it so asyncio does not
    report 'Future exception was never retrieved'."""
    future = getattr(operation, "_workflow_handle", None)
    if future is not None and future.done() and not future.cancelled():
        future.exception()


def loan_handle(client: Client, loan_id: str) -> WorkflowHandle[LoanWorkflow, LoanView]:
    return client.get_workflow_handle_for(LoanWorkflow.run, loan_workflow_id(loan_id))


async def loan_view(client: Client, loan_id: str) -> LoanView | None:
    """The loan's current view, or None when no such workflow exists."""
    try:
        return await loan_handle(client, loan_id).query(LoanWorkflow.status)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise


async def recorded_view(
    client: Client,
    loan_id: str,
    *,
    rpc_timeout: timedelta | None = None,
    fresh_wait: timedelta | None = None,
) -> LoanView | None:
    """The loan's view, or None when no such workflow exists, answered with no worker running.

    Describe (served by the Temporal server alone) gives the view the workflow recorded in its
    memo (workflows/loan_memo.py) at its last completed workflow task. When the server says a
    workflow task is pending (a signal not yet handled, e.g. the cancel just sent), the memo
    may be one step behind: if the task is fresh (scheduled less than 2 x `fresh_wait` ago, by
    this host's clock) a query, which waits for it, is tried for `fresh_wait`; if no worker
    answers in time, or the task is older, the recorded view is the answer. A run started
    before the memo existed is queried (that needs a worker)."""
    handle = loan_handle(client, loan_id)
    try:
        description = await handle.describe(rpc_timeout=rpc_timeout)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    view = view_from_memo(await description.memo())
    if view is None:
        return await handle.query(LoanWorkflow.status, rpc_timeout=rpc_timeout)
    if _fresh_task_pending(description.raw_description, fresh_wait):
        try:
            return await handle.query(LoanWorkflow.status, rpc_timeout=fresh_wait)
        except (RPCError, WorkflowQueryFailedError):
            pass  # no worker answered in time: the state as last recorded
    return view


def _fresh_task_pending(raw: Any, fresh_wait: timedelta | None) -> bool:
    """A workflow task pending since less than twice `fresh_wait`: a signal just sent that a
    live worker is about to handle. One pending longer is not being handled (no worker, or a
    paused one): a query would only wait, so the recorded view answers at once."""
    if (
        fresh_wait is None
        or fresh_wait <= timedelta(0)
        or not raw.HasField("pending_workflow_task")
    ):
        return False
    scheduled = raw.pending_workflow_task.scheduled_time.ToDatetime(tzinfo=UTC)
    return bool(datetime.now(UTC) - scheduled < 2 * fresh_wait)


async def _signal_error(client: Client, loan_id: str, exc: RPCError) -> Exception:
    if exc.status != RPCStatusCode.NOT_FOUND:
        return exc
    try:
        await loan_handle(client, loan_id).describe()
    except RPCError as describe_exc:
        if describe_exc.status == RPCStatusCode.NOT_FOUND:
            return LoanNotFound(f"no loan {loan_id}")
        return describe_exc
    return LoanClosed(f"loan {loan_id} is closed")


async def _signal(client: Client, loan_id: str, method: Any, signal: object) -> None:
    """Send one of the loan's signals; an RPC failure becomes LoanNotFound / LoanClosed."""
    try:
        await loan_handle(client, loan_id).signal(method, signal)
    except RPCError as exc:
        raise await _signal_error(client, loan_id, exc) from exc


async def signal_submitted(client: Client, loan_id: str, signal: Submitted) -> None:
    await _signal(client, loan_id, LoanWorkflow.submitted, signal)


async def signal_cancel(client: Client, loan_id: str, signal: Cancel) -> None:
    await _signal(client, loan_id, LoanWorkflow.cancel, signal)


async def signal_settled(client: Client, loan_id: str, signal: Settled) -> None:
    await _signal(client, loan_id, LoanWorkflow.settled, signal)


async def signal_settlement_failed(client: Client, loan_id: str, signal: SettlementFailed) -> None:
    await _signal(client, loan_id, LoanWorkflow.settlement_failed, signal)
