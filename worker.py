"""Temporal worker: hosts the saga's workflows and activities in one process (`python worker.py`).

Settings come from the environment (core.settings), so the worker, the API and the watcher
always agree on Redis prefix, task queue and RPC endpoint. SIGTERM / SIGINT stop polling and let
running activities finish before the process exits (runtime.worker).
"""

from __future__ import annotations

import asyncio
import logging

from core.settings import get_settings
from runtime.signals import stop_event
from runtime.worker import keep_bytecode_cache, serve


async def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    keep_bytecode_cache()
    await serve(get_settings(), stop_event())


if __name__ == "__main__":
    asyncio.run(main())
