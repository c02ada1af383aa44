"""How a long-running process learns it should stop."""

from __future__ import annotations

import asyncio
import signal


def stop_event() -> asyncio.Event:
    """An event set on SIGTERM or SIGINT, so the process can finish what it is doing (drain a
    worker, release the watcher's lease) instead of dying mid-step. Call from the running loop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop
