"""Fault tests on real Redis topologies: a Sentinel group (primary + replica + 3 sentinels) of
this test's own, started from `redis-server` on free ports and stopped by PID, with a saga stack
(in-process worker + watcher) whose ledger talks to it through the Sentinel client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.temporal import SagaStack, running_saga_stack
from tools.redis_servers import SentinelGroup, start_sentinel_group

SERVICE = "ledger"


@pytest.fixture
def sentinel_group(tmp_path: Path) -> Any:
    """Factory: a fresh Sentinel group under tmp_path, stopped after the test."""
    groups: list[SentinelGroup] = []

    def start(**options: Any) -> SentinelGroup:
        group = start_sentinel_group(tmp_path / f"group-{len(groups)}", service=SERVICE, **options)
        groups.append(group)
        return group

    yield start
    for group in groups:
        group.stop()
        for server in [group.primary, *group.replicas]:
            server.stop()


@pytest.fixture
def sentinel_stack(temporal_env: Any, devnet: Any) -> Callable[..., Any]:
    """`async with sentinel_stack(group, redis_min_replicas=N) as stack:` a saga stack on the
    group's primary, found through its sentinels."""

    @asynccontextmanager
    async def open_stack(group: SentinelGroup, **overrides: Any) -> AsyncIterator[SagaStack]:
        async with running_saga_stack(
            temporal_env,
            devnet,
            redis_url="redis://unused:0/0",
            redis_sentinels=group.sentinel_addresses,
            redis_sentinel_service=SERVICE,
            **overrides,
        ) as stack:
            yield stack

    return open_stack


async def wait_until(predicate: Callable[[], Any], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {within}s waiting for {what}")
