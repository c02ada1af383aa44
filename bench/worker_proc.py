"""The benchmark's worker process: worker.py's worker plus the bare floors, settings from env.

A separate process (as in production) so the worker does not share a GIL with the borrowers
driving the benchmark."""

from __future__ import annotations

import asyncio
import signal

from bench.bare import BareWorkflow, IndexedBareWorkflow, noop
from core.heap import freeze_startup_heap
from core.settings import get_settings
from worker import build_worker, open_deps
from workflows.loan_client import connect


async def main() -> None:
    settings = get_settings()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    client = await connect(settings)
    async with open_deps(settings) as deps:
        worker = build_worker(
            client,
            deps,
            extra_workflows=[BareWorkflow, IndexedBareWorkflow],
            extra_activities=[noop],
        )
        async with worker:
            freeze_startup_heap()  # as worker.serve does
            await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
