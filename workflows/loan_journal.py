"""The open-loan journal: a durable, strongly consistent list of the loans that may hold a
reservation, so that restoring a lost ledger is exact.

Why: Temporal visibility (list by the PoolId search attribute) is eventually consistent: a loan
opened moments before Redis lost its keys may not be listed yet, and a restore from visibility
alone would miss its reservation (an over-commit).
Redis cannot hold this list (it is what gets lost). Temporal can: a signal is durable once the
RPC returns, and a query sees every signal the workflow accepted before it (Temporal answers a
query after the workflow task that delivers pending events). So the reserve activity records
every grant here *before* it returns, i.e. before the XDR can leave the saga, and the reconciler
reads the journal (plus visibility, for loans older than the journal keeps) and asks each loan
workflow, by id, what it holds.

An entry is kept until its reservation's hold has ended (then the reservation would be swept
anyway). The journal is split into shards (one workflow each, chosen by the loan id) so that no
single workflow carries every open loan, and each continues-as-new before its history grows
long, carrying only the live entries.
"""

from __future__ import annotations

import zlib
from datetime import timedelta

from pydantic import BaseModel, Field
from temporalio import workflow

PRUNE_INTERVAL = timedelta(minutes=1)
KEEP_PAST_HOLD_MS = 60_000  # clock slack between Redis TIME and workflow time
MAX_HISTORY_EVENTS = 2_000


class JournalEntry(BaseModel):
    loan_id: str
    pool_id: str
    hold_until_ms: int  # the reservation counts until then (Redis time)


class JournalState(BaseModel):
    entries: list[JournalEntry] = Field(default_factory=list)
    max_history_events: int = MAX_HISTORY_EVENTS  # continue-as-new from this history length


@workflow.defn(name="LoanJournal")
class LoanJournalWorkflow:
    def __init__(self) -> None:
        self._entries: dict[str, JournalEntry] = {}
        self._max_history = MAX_HISTORY_EVENTS

    @workflow.run
    async def run(self, state: JournalState) -> None:
        self._max_history = state.max_history_events
        for entry in state.entries:
            self._entries[entry.loan_id] = entry
        while True:
            try:
                await workflow.wait_condition(self._history_long, timeout=PRUNE_INTERVAL)
            except TimeoutError:
                pass
            self._prune()
            if self._history_long():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(
                    JournalState(
                        entries=list(self._entries.values()),
                        max_history_events=self._max_history,
                    )
                )

    def _history_long(self) -> bool:
        info = workflow.info()
        return (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() >= self._max_history
        )

    def _prune(self) -> None:
        now_ms = int(workflow.now().timestamp() * 1000)
        for loan_id in [
            k for k, e in self._entries.items() if e.hold_until_ms + KEEP_PAST_HOLD_MS < now_ms
        ]:
            del self._entries[loan_id]

    @workflow.signal
    def record(self, entry: JournalEntry) -> None:
        self._entries[entry.loan_id] = entry

    @workflow.query
    def entries(self, pool_id: str) -> list[JournalEntry]:
        return [e for e in self._entries.values() if e.pool_id == pool_id]


def journal_id(task_queue: str, shard: int) -> str:
    return f"loan-journal-{task_queue}-{shard}"


def shard_of(loan_id: str, shards: int) -> int:
    return zlib.crc32(loan_id.encode()) % shards
