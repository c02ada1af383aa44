"""Client side of the open-loan journal (workflows/loan_journal.py): record a grant with
signal-with-start (a missing shard is started) and read a pool's entries from every shard. Kept
apart from the workflow module, which Temporal's sandbox re-imports for every run."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from workflows.loan_journal import (
    JournalEntry,
    JournalState,
    LoanJournalWorkflow,
    journal_id,
    shard_of,
)


class TemporalLoanJournal:
    """One deployment's journal: `shards` workflows on its task queue."""

    def __init__(self, client: Client, *, task_queue: str, shards: int) -> None:
        if shards <= 0:
            raise ValueError("a journal needs at least one shard")
        self._client = client
        self._task_queue = task_queue
        self._shards = shards

    async def record(self, loan_id: str, pool_id: str, hold_until_ms: int) -> None:
        shard = shard_of(loan_id, self._shards)
        await self._client.start_workflow(
            LoanJournalWorkflow.run,
            JournalState(),
            id=journal_id(self._task_queue, shard),
            task_queue=self._task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            start_signal="record",
            start_signal_args=[
                JournalEntry(loan_id=loan_id, pool_id=pool_id, hold_until_ms=hold_until_ms)
            ],
        )

    async def entries(self, pool_id: str) -> list[JournalEntry]:
        """Every shard's entries of the pool. A shard that was never started has none; any other
        failure raises: a restore must not go on without the journal."""

        async def one(shard: int) -> list[JournalEntry]:
            handle = self._client.get_workflow_handle(journal_id(self._task_queue, shard))
            try:
                return await handle.query(
                    LoanJournalWorkflow.entries, pool_id, rpc_timeout=timedelta(seconds=10)
                )
            except RPCError as exc:
                if exc.status == RPCStatusCode.NOT_FOUND:
                    return []
                raise

        found = await asyncio.gather(*(one(s) for s in range(self._shards)))
        return [e for shard in found for e in shard]
