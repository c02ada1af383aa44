"""Activities of the reconciler: a thin adapter from Temporal to reconcile.reconciler.

The one piece of Temporal knowledge the domain logic needs, "which loans exist and what do they
hold", is a `LoanDirectory`; the worker hands in how to build one from the activity's Temporal
client (workflows.loan_directory.TemporalLoanDirectory), so this module imports no workflow.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pydantic import BaseModel
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from chain.client import ChainClient
from core.settings import Settings
from liquidity.ledger import Ledger
from liquidity.tx_index import TxIndex
from reconcile.reconciler import LoanDirectory, PoolReport, Reconciler, ReportStore

# Builds the loan directory of one run from the activity's Temporal client.
DirectoryFactory = Callable[[Client], LoanDirectory]


class PoolRequest(BaseModel):
    pool_id: str
    run_id: str = ""


class ReconcileActivities:
    """Holds the process-wide clients; one instance is registered with the worker."""

    def __init__(
        self,
        *,
        settings: Settings,
        ledger: Ledger,
        chain: ChainClient,
        tx_index: TxIndex,
        reports: ReportStore,
        directory: DirectoryFactory,
    ) -> None:
        self._settings = settings
        self._directory = directory
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
                f"pool {request.pool_id} is not configured",
                type="UnknownPool",
                non_retryable=True,
            )
        reconciler = Reconciler(
            ledger=self._ledger,
            chain=self._chain,
            tx_index=self._tx_index,
            directory=self._directory(activity.client()),
            reports=self._reports,
            grace_ms=self._settings.settlement_grace_seconds * 1000,
            freeze_threshold=self._settings.drift_freeze_threshold_stroops,
            event_window_ledgers=self._settings.reconcile_event_window_ledgers,
            clock=time.time,
            progress=activity.heartbeat,  # the workflow's heartbeat timeout catches a stuck run
        )
        return await reconciler.reconcile(request.pool_id, creditline, run_id=request.run_id)

    def all(self) -> list[object]:
        return [self.pools, self.reconcile_pool]
