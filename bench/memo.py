"""What the loan's memo writes cost (`python -m bench.memo`): an A/B of the engine floor.

The loan records its view in its workflow memo (workflows/loan_memo.py) so reads need no worker:
the starter puts the initial view in the start request and every state change upserts the keys
that changed (a history event each, and more bytes in the mutable state the server writes). This
runs bench/bare.py's BareWorkflow (LoanWorkflow's Temporal shape, no work) against
MemoBareWorkflow, the same plus exactly the loan's memo traffic on the funded path: the start
memo and upserts at assessing, reserved (with a funding of the real XDR's size), submitted and
funded, each a real `LoanView` dump made by workflows/loan_memo.py.

Own Temporal dev server, in-process worker; N concurrent clients each open (update-with-start),
signal, and wait for the result. The two kinds alternate in rounds (A B A B ...) so both see the
same drift of the shared machine. Figures per kind and N: workflows (open, signal, result) per
second, time-to-offer p50/p99 (the update-with-start round trip), history events and bytes of
one workflow.
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from temporalio import workflow
from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from bench.bare import BareWorkflow, noop

with workflow.unsafe.imports_passed_through():
    from core.models import Funding, HistoryEntry, LoanInput, LoanState, LoanTerms, LoanView
    from workflows.loan_memo import initial_view, memo_fields

XDR_CHARS = 3_700  # base64 length of a devnet funding envelope with one installment
ACCOUNT = "G" + "A" * 55


def sample_loan(name: str) -> LoanInput:
    return LoanInput(
        loan_id=name,
        pool_id="C" + "B" * 55,
        creditline_id="C" + "C" * 55,
        terms=LoanTerms(
            borrower=ACCOUNT,
            vendor=ACCOUNT,
            total_amount=1_000_000_000,
            guarantee_amount=200_000_000,
            repayment_schedule=[{"amount": 1_000_000_000, "due_date": 1_900_000_000}],
        ),
        fingerprint="f" * 64,
    )


@workflow.defn
class MemoBareWorkflow(BareWorkflow):
    """The floor plus the loan's memo writes, the same keys and sizes as LoanWorkflow's."""

    @workflow.init
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._view: LoanView = initial_view(sample_loan(name))
        self._memoized: dict[str, Any] = dict(workflow.memo())

    @workflow.run
    async def run(self, name: str) -> str:
        self._state_changed("assessing")
        return await super().run(name)

    def _state_changed(self, state: str) -> None:
        view = self._view
        view.state = LoanState(state)
        view.history.append(HistoryEntry(at=workflow.now(), state=view.state, detail=state))
        if state == "reserved":
            view.reserved_amount = 800_000_000
            view.funding = Funding(xdr="A" * XDR_CHARS, tx_hash="e" * 64, expires_at=1_900_000_000)
        changed = {k: v for k, v in memo_fields(view).items() if self._memoized.get(k) != v}
        if changed:
            workflow.upsert_memo(changed)
            self._memoized.update(changed)

    @workflow.signal
    def settled(self, ledger: int) -> None:
        self._state_changed("submitted")
        super().settled(ledger)


async def one(client: Client, kind: type[BareWorkflow], queue: str) -> float:
    name = f"{kind.__name__}-{uuid.uuid4().hex[:12]}"
    memo = memo_fields(initial_view(sample_loan(name))) if kind is MemoBareWorkflow else None
    op = WithStartWorkflowOperation(
        kind.run,
        name,
        id=name,
        task_queue=queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        memo=memo,
    )
    started = time.perf_counter()
    await client.execute_update_with_start_workflow(kind.open, "open", start_workflow_operation=op)
    took = time.perf_counter() - started
    handle = await op.workflow_handle()
    await handle.signal(kind.settled, 1)
    await handle.result()
    return took


async def round_(
    client: Client, kind: type[BareWorkflow], queue: str, n: int, per: int
) -> tuple[list[float], float]:
    async def client_loop() -> list[float]:
        return [await one(client, kind, queue) for _ in range(per)]

    started = time.perf_counter()
    lat = [x for xs in await asyncio.gather(*(client_loop() for _ in range(n))) for x in xs]
    return lat, time.perf_counter() - started


async def history_size(client: Client, kind: type[BareWorkflow], queue: str) -> dict[str, int]:
    name = f"size-{uuid.uuid4().hex[:8]}"
    memo = memo_fields(initial_view(sample_loan(name))) if kind is MemoBareWorkflow else None
    op = WithStartWorkflowOperation(
        kind.run,
        name,
        id=name,
        task_queue=queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        memo=memo,
    )
    await client.execute_update_with_start_workflow(kind.open, "o", start_workflow_operation=op)
    handle = await op.workflow_handle()
    await handle.signal(kind.settled, 1)
    await handle.result()
    history = await handle.fetch_history()
    size = sum(event.ByteSize() for event in history.events)
    return {"events": len(history.events), "bytes": size}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--concurrency", default="1,8")
    parser.add_argument("--per-client", type=int, default=None, help="default 80 / N, min 10")
    parser.add_argument("--rounds", type=int, default=4, help="A/B rounds per N")
    args = parser.parse_args()
    cli = shutil.which("temporal", path=str(Path(sys.executable).parent)) or shutil.which(
        "temporal"
    )
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=cli,
        data_converter=pydantic_data_converter,
        dev_server_log_level="error",
    )
    client = env.client
    queue = f"bench-memo-{uuid.uuid4().hex[:6]}"
    kinds: list[type[BareWorkflow]] = [BareWorkflow, MemoBareWorkflow]
    results: dict[str, Any] = {}
    try:
        async with Worker(
            client,
            task_queue=queue,
            workflows=kinds,
            activities=[noop],
        ):
            for kind in kinds:  # warm-up, not reported
                await round_(client, kind, queue, 4, 5)
            sizes = {k.__name__: await history_size(client, k, queue) for k in kinds}
            for n in [int(x) for x in args.concurrency.split(",")]:
                per = args.per_client or max(10, 80 // n)
                lat: dict[str, list[float]] = {k.__name__: [] for k in kinds}
                secs: dict[str, float] = {k.__name__: 0.0 for k in kinds}
                for r in range(args.rounds):
                    order = kinds if r % 2 == 0 else kinds[::-1]
                    for kind in order:
                        got, took = await round_(client, kind, queue, n, per)
                        lat[kind.__name__] += got
                        secs[kind.__name__] += took
                results[str(n)] = {
                    name: {
                        "workflows_per_s": round(len(lat[name]) / secs[name], 2),
                        "offer_p50_ms": round(pct(lat[name], 0.5), 1),
                        "offer_p99_ms": round(pct(lat[name], 0.99), 1),
                        "mean_ms": round(statistics.fmean(lat[name]) * 1000, 1),
                    }
                    for name in lat
                }
    finally:
        await env.shutdown()

    print(f"{'N':>3} {'kind':<18} {'wf/s':>8} {'offer p50':>10} {'p99':>8}")
    for level, by_kind in results.items():
        for name, fig in by_kind.items():
            print(
                f"{level:>3} {name:<18} {fig['workflows_per_s']:>8} {fig['offer_p50_ms']:>9}ms "
                f"{fig['offer_p99_ms']:>7}ms"
            )
    for name, size in sizes.items():
        print(f"history of one {name}: {size['events']} events, {size['bytes']} bytes")
    print(
        json.dumps(
            {
                "when": datetime.now(UTC).isoformat(timespec="seconds"),
                "by_concurrency": results,
                "history": sizes,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
