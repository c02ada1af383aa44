"""The reconciler's view of the loans: `TemporalLoanDirectory` implements
reconcile.reconciler.LoanDirectory over the loan workflows, with a Temporal client.

It describes a loan's workflow (works with no worker up), queries its `status` for the details
(bounded by a short RPC timeout, so a loan whose worker is down is reported as undetermined
rather than stalling the run), finds a pool's open loans through the `PoolId` search attribute,
and signals `settled`. It is client code, like loan_client.py: the reconcile activity is handed
one per run, so activities/ never imports workflows/.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from datetime import timedelta

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from core.models import LoanState, LoanView, Settled
from reconcile.reconciler import LoanInfo
from workflows.loan import LoanWorkflow
from workflows.loan_client import LoanClosed, LoanNotFound, loan_handle, signal_settled
from workflows.loan_journal import KEEP_PAST_HOLD_MS
from workflows.loan_journal_client import TemporalLoanJournal
from workflows.search_attributes import AMOUNT_STROOPS, BORROWER, EXPIRES_AT, LOAN_STATE

QUERY_TIMEOUT = timedelta(seconds=5)
_CONTRACT_ID = re.compile(r"^[A-Z0-9]{1,128}$")


class TemporalLoanDirectory:
    def __init__(
        self,
        client: Client,
        *,
        query_timeout: timedelta = QUERY_TIMEOUT,
        journal: Callable[[Client], TemporalLoanJournal] | None = None,
    ) -> None:
        """`journal`: the open-loan journal's factory (workflows/loan_journal.py); with it, a
        pool's open loans are visibility's list plus every journaled loan, asked by id."""
        self._client = client
        self._timeout = query_timeout
        self._journal = journal(client) if journal is not None else None

    async def _view(self, handle: WorkflowHandle[LoanWorkflow, LoanView]) -> LoanView | None:
        try:
            return await handle.query(LoanWorkflow.status, rpc_timeout=self._timeout)
        except Exception:  # no worker for the task queue, timeout, query failure: not fatal
            return None

    async def lookup(self, loan_id: str) -> LoanInfo | None:
        handle = loan_handle(self._client, loan_id)
        try:
            desc = await handle.describe()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return None
            raise
        view = await self._view(handle)
        return _info(loan_id, desc.status == WorkflowExecutionStatus.RUNNING, view)

    async def open_loans(self, pool_id: str) -> list[LoanInfo]:
        if not _CONTRACT_ID.match(pool_id):
            raise ValueError(f"unexpected pool id {pool_id!r}")
        query = (
            f"PoolId = '{pool_id}' AND ExecutionStatus = 'Running' "
            f"AND WorkflowType = '{LoanWorkflow.__name__}'"
        )
        loans: list[LoanInfo] = []
        async for execution in self._client.list_workflows(query):
            loan_id = execution.id.removeprefix("loan-")
            view = await self._view(loan_handle(self._client, loan_id))
            if view is not None:
                loans.append(_info(loan_id, True, view))
                continue
            # The query could not be answered: the search attributes say enough to restore.
            attrs = execution.typed_search_attributes
            expires = attrs.get(EXPIRES_AT)
            state = attrs.get(LOAN_STATE)
            loans.append(
                LoanInfo(
                    loan_id=loan_id,
                    open=True,
                    state=LoanState(state) if state else None,
                    borrower=attrs.get(BORROWER),
                    amount=attrs.get(AMOUNT_STROOPS) or 0,
                    expires_at=int(expires.timestamp()) if expires else None,
                )
            )
        if self._journal is not None:
            # Visibility lags; the journal does not: every loan granted a reservation whose hold
            # has not ended is in it. Ask each one missing from the list by id (strongly
            # consistent: describe + query of the loan's own workflow).
            listed = {loan.loan_id for loan in loans}
            now_ms = int(time.time() * 1000)
            missing = sorted(
                {
                    e.loan_id
                    for e in await self._journal.entries(pool_id)
                    if e.hold_until_ms + KEEP_PAST_HOLD_MS >= now_ms
                }
                - listed
            )
            for info in await asyncio.gather(*(self.lookup(loan_id) for loan_id in missing)):
                if info is not None and info.open:
                    loans.append(info)
        return loans

    async def tell_settled(self, loan_id: str, tx_hash: str, ledger: int) -> None:
        try:
            await signal_settled(self._client, loan_id, Settled(tx_hash=tx_hash, ledger=ledger))
        except (LoanClosed, LoanNotFound):
            pass  # nobody left to tell; the ledger commit already recorded the settlement


def _info(loan_id: str, open_: bool, view: LoanView | None) -> LoanInfo:
    if view is None:
        return LoanInfo(loan_id=loan_id, open=open_)
    return LoanInfo(
        loan_id=loan_id,
        open=open_,
        state=view.state,
        borrower=view.borrower,
        amount=view.reserved_amount,
        expires_at=view.funding.expires_at if view.funding else None,
        # a sponsored loan has no hash before its submit
        tx_hash=(view.funding.tx_hash or None) if view.funding else None,
    )
