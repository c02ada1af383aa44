"""Garbage-collector tuning for the saga's long-running processes (worker, watcher, devnet)."""

from __future__ import annotations

import gc


def freeze_startup_heap() -> None:
    """Move everything alive after start-up into the collector's permanent generation.

    The imports (temporalio, stellar-sdk, pydantic, aiohttp) and the clients leave a large heap
    that lives as long as the process, and every full collection would walk all of it again (a
    pause for every workflow on that worker; figures in docs/benchmarks.md). Frozen objects are
    never traversed again; what the process allocates afterwards is collected as before."""
    gc.collect()
    gc.freeze()
