"""The benchmark's worker process: worker.py's worker plus the bare floors, settings from env.

A separate process (as in production) so the worker does not share a GIL with the borrowers
driving the benchmark."""

from __future__ import annotations

import asyncio

from bench.bare import BareWorkflow, IndexedBareWorkflow, noop
from core.heap import freeze_startup_heap
from core.settings import get_settings
from runtime.clients import open_clients, temporal_client
from runtime.signals import stop_event
from runtime.worker import build_worker, keep_bytecode_cache


async def main() -> None:
    settings = get_settings()
    stop = stop_event()
    keep_bytecode_cache()  # as worker.py does
    client = await temporal_client(settings)
    async with open_clients(settings) as clients:
        worker = build_worker(
            client,
            clients,
            extra_workflows=[BareWorkflow, IndexedBareWorkflow],
            extra_activities=[noop],
        )
        async with worker:
            freeze_startup_heap()  # as worker.serve does
            await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
