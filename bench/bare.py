"""The engine's floor for bench/e2e.py: a workflow of LoanWorkflow's shape that does nothing.

Same Temporal work per loan as the benchmarked path: started by update-with-start, three local
activities before the update returns, one signal, one regular activity, then completion. The gap
between this and the real loan is what the saga's own work (Redis, RPC simulation) costs.

IndexedBareWorkflow (`--indexed-floor`) adds what the loan must do for operators and the floor
does not: the loan's search attributes on the start and the loan's two upserts on the happy path
(LoanState and ExpiresAt with the offer, LoanState when funded). It measures how much of the gap
is that indexing (each upsert is a history event and a visibility write on the server)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.common import SearchAttributeUpdate

with workflow.unsafe.imports_passed_through():
    from workflows.search_attributes import EXPIRES_AT, LOAN_STATE


@activity.defn(name="bare.noop")
async def noop(step: str) -> str:
    return step


@workflow.defn
class BareWorkflow:
    @workflow.init
    def __init__(self, name: str) -> None:
        self._offer: str | None = None
        self._signalled = False

    @workflow.run
    async def run(self, name: str) -> str:
        for step in ("assess", "reserve", "build"):
            await workflow.execute_local_activity(
                noop, step, start_to_close_timeout=timedelta(seconds=10)
            )
        self._offer = f"offer-{name}"
        self._state_changed("reserved")
        await workflow.wait_condition(lambda: self._signalled, timeout=timedelta(minutes=10))
        await workflow.execute_activity(
            noop, "commit", start_to_close_timeout=timedelta(seconds=10)
        )
        self._state_changed("funded")
        await workflow.wait_condition(workflow.all_handlers_finished)
        return "done"

    def _state_changed(self, state: str) -> None:
        """Where the loan indexes a state change; the floor keeps no index."""

    @workflow.update
    async def open(self, request: str) -> str:
        await workflow.wait_condition(lambda: self._offer is not None)
        assert self._offer is not None
        return self._offer

    @workflow.signal
    def settled(self, ledger: int) -> None:
        self._signalled = True


@workflow.defn
class IndexedBareWorkflow(BareWorkflow):
    """The floor plus the loan's indexing: the starter sets the loan's start attributes."""

    @workflow.run
    async def run(self, name: str) -> str:
        return await super().run(name)

    def _state_changed(self, state: str) -> None:
        updates: list[SearchAttributeUpdate[Any]] = [LOAN_STATE.value_set(state)]
        if state == "reserved":
            updates.append(EXPIRES_AT.value_set(workflow.now() + timedelta(minutes=5)))
        workflow.upsert_search_attributes(updates)
