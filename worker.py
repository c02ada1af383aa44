"""Temporal worker: hosts the saga's workflows and activities in one process (`python worker.py`).

Settings come from the environment (core.settings), so the worker, the API and the watcher
always agree on Redis prefix, task queue and RPC endpoint. SIGTERM / SIGINT stop polling and let
running activities finish before the process exits (runtime.worker).
"""

from __future__ import annotations

import asyncio

from temporalio import activity, workflow

from core.settings import get_settings
from core.telemetry.exporter import start_process_telemetry
from core.telemetry.logs import configure_logging
from runtime.signals import stop_event
from runtime.worker import keep_bytecode_cache, serve


async def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_level, "worker")
    # The JSON lines carry the SDK's workflow/activity info as fields; not in the message too.
    workflow.logger.workflow_info_on_message = False
    activity.logger.activity_info_on_message = False
    start_process_telemetry("worker", host=settings.metrics_host, port=settings.worker_metrics_port)
    keep_bytecode_cache()
    await serve(settings, stop_event())


if __name__ == "__main__":
    asyncio.run(main())
