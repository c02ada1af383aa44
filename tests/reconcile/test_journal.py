"""The open-loan journal workflow: it keeps what it is told until the hold has ended, carries the
live entries across continue-as-new, answers queries with every accepted signal, and its
recorded history replays against the current code (RECORD_HISTORIES=1 re-records it)."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer, Worker

from tests.reconcile.conftest import wait_until
from workflows.loan_journal import JournalState, LoanJournalWorkflow
from workflows.loan_journal_client import TemporalLoanJournal

HISTORY = Path(__file__).resolve().parents[1] / "histories" / "journal" / "journal_continued.json"


async def test_journal_keeps_live_entries_across_continue_as_new(temporal_env):
    client = temporal_env.client
    task_queue = f"journal-{uuid.uuid4().hex[:8]}"
    journal = TemporalLoanJournal(client, task_queue=task_queue, shards=1)
    wid = f"loan-journal-{task_queue}-0"
    async with Worker(client, task_queue=task_queue, workflows=[LoanJournalWorkflow]):
        first = await client.start_workflow(
            LoanJournalWorkflow.run,
            JournalState(max_history_events=10),
            id=wid,
            task_queue=task_queue,
        )
        live = int(time.time() * 1000) + 600_000
        await journal.record("gone", "P1", 0)  # hold long over: pruned at the next pass
        for i in range(12):
            await journal.record(f"L{i}", "P1" if i % 2 else "P2", live)
        # Read at once: every accepted signal is in the answer.
        odd = {f"L{i}" for i in range(1, 12, 2)}
        assert {e.loan_id for e in await journal.entries("P1")} >= odd

        async def continued() -> bool:
            desc = await client.get_workflow_handle(wid).describe()
            return desc.run_id != first.result_run_id

        await wait_until(continued, within=20)
        after = {e.loan_id for e in await journal.entries("P1")}
        after |= {e.loan_id for e in await journal.entries("P2")}
        assert after == {f"L{i}" for i in range(12)}  # "gone" was pruned, the rest carried
        history = await client.get_workflow_handle(wid, run_id=first.result_run_id).fetch_history()
        await client.get_workflow_handle(wid).terminate("test over")
    if os.environ.get("RECORD_HISTORIES"):
        HISTORY.write_text(history.to_json())
    await Replayer(
        workflows=[LoanJournalWorkflow], data_converter=pydantic_data_converter
    ).replay_workflow(history)


async def test_recorded_journal_history_replays():
    history = WorkflowHistory.from_json("journal", HISTORY.read_text())
    await Replayer(
        workflows=[LoanJournalWorkflow], data_converter=pydantic_data_converter
    ).replay_workflow(history)
