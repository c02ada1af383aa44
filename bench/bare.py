"""The engine's floor for bench/e2e.py: a workflow of LoanWorkflow's shape that does nothing.

Same Temporal work per loan as the benchmarked path: started by update-with-start, three local
activities before the update returns, one signal, one regular activity, then completion. The gap
between this and the real loan is what the saga's own work (Redis, RPC simulation) costs."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow


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
        await workflow.wait_condition(lambda: self._signalled, timeout=timedelta(minutes=10))
        await workflow.execute_activity(
            noop, "commit", start_to_close_timeout=timedelta(seconds=10)
        )
        await workflow.wait_condition(workflow.all_handlers_finished)
        return "done"

    @workflow.update
    async def open(self, request: str) -> str:
        await workflow.wait_condition(lambda: self._offer is not None)
        assert self._offer is not None
        return self._offer

    @workflow.signal
    def settled(self, ledger: int) -> None:
        self._signalled = True
