"""Activities of the reconciler: a thin adapter from Temporal to liquidity.reconcile.

The one piece of Temporal knowledge the domain logic needs, "which loans exist and what do they
hold", is `TemporalLoanDirectory`: it describes a loan's workflow (works with no worker up),
queries its `status` for the details (bounded by a short RPC timeout, so a loan whose worker is
down is reported as undetermined rather than stalling the run), finds a pool's open loans through
the `PoolId` search attribute, and signals `settled`.
"""

from __future__ import annotations

import re
import time
from datetime import timedelta

from pydantic import BaseModel
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from chain.client import ChainClient
from core.models import LoanState, LoanView, Settled
from core.settings import Settings
from liquidity.ledger import Ledger
from liquidity.reconcile import LoanInfo, PoolReport, Reconciler, ReportStore
from liquidity.tx_index import TxIndex
from workflows.loan import LoanWorkflow
from workflows.loan_client import LoanClosed, LoanNotFound, loan_handle, signal_settled
from workflows.search_attributes import AMOUNT_STROOPS, BORROWER, EXPIRES_AT, LOAN_STATE

QUERY_TIMEOUT = timedelta(seconds=5)
_CONTRACT_ID = re.compile(r"^[A-Z0-9]{1,128}$")


class PoolRequest(BaseModel):
    pool_id: str
    run_id: str = ""


class TemporalLoanDirectory:
    def __init__(self, client: Client, *, query_timeout: timedelta = QUERY_TIMEOUT) -> None:
        self._client = client
        self._timeout = query_timeout

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
                    loan_id=loan_id, open=True,
                    state=LoanState(state) if state else None,
                    borrower=attrs.get(BORROWER), amount=attrs.get(AMOUNT_STROOPS) or 0,
                    expires_at=int(expires.timestamp()) if expires else None,
                )
            )
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
        loan_id=loan_id, open=open_, state=view.state, borrower=view.borrower,
        amount=view.reserved_amount,
        expires_at=view.funding.expires_at if view.funding else None,
        tx_hash=view.funding.tx_hash if view.funding else None,
    )


class ReconcileActivities:
    """Holds the process-wide clients; one instance is registered with the worker."""

    def __init__(
        self, *, settings: Settings, ledger: Ledger, chain: ChainClient, tx_index: TxIndex,
        reports: ReportStore,
    ) -> None:
        self._settings = settings
        self._ledger = ledger
        self._chain = chain
        self._tx_index = tx_index
        self._reports = reports

    @activity.defn(name="reconcile.pools")
    async def pools(self) -> list[str]:
        """The pools this deployment serves (settings are re-read: pools may be added)."""
        return sorted(self._settings.pools)

    @activity.defn(name="reconcile.pool")
    async def reconcile_pool(self, request: PoolRequest) -> PoolReport:
        creditline = self._settings.pools.get(request.pool_id)
        if creditline is None:
            raise ApplicationError(
                f"pool {request.pool_id} is not configured", type="UnknownPool",
                non_retryable=True,
            )
        reconciler = Reconciler(
            ledger=self._ledger, chain=self._chain, tx_index=self._tx_index,
            directory=TemporalLoanDirectory(activity.client()), reports=self._reports,
            grace_ms=self._settings.settlement_grace_seconds * 1000,
            freeze_threshold=self._settings.drift_freeze_threshold_stroops,
            event_window_ledgers=self._settings.reconcile_event_window_ledgers,
            clock=time.time,
        )
        return await reconciler.reconcile(request.pool_id, creditline, run_id=request.run_id)

    def all(self) -> list[object]:
        return [self.pools, self.reconcile_pool]
