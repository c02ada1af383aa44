"""The three product processes as real subprocesses (`python -m api`, `worker.py`,
`watcher.py`), each with its own metrics port, sharing the session's Temporal dev server, devnet
and Redis under a private prefix, task queue and pool: what an operator scrapes, read the way
Prometheus reads it."""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from stellar_sdk import Keypair

from tests.fixtures.redis import delete_prefix
from tests.fixtures.temporal import stack_settings
from tests.saga.procs import Proc
from tools.procs import free_port


class Samples:
    """One scrape: every sample by name, with its labels."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families: dict[str, str] = {}  # family name -> type
        self.rows: list[tuple[str, dict[str, str], float]] = []
        for family in text_string_to_metric_families(text):
            self.families[family.name] = family.type
            for sample in family.samples:
                self.rows.append((sample.name, dict(sample.labels), float(sample.value)))

    def names(self) -> set[str]:
        """Every sample name (what a PromQL expression refers to)."""
        return {name for name, _, _ in self.rows} | set(self.families)

    def value(self, name: str, **labels: str) -> float:
        """The sum over the samples of `name` whose labels include `labels`."""
        found = [
            v
            for n, lab, v in self.rows
            if n == name and all(lab.get(k) == w for k, w in labels.items())
        ]
        assert found, f"no sample {name}{labels} in the scrape"
        return sum(found)

    def has(self, name: str, **labels: str) -> bool:
        return any(
            n == name and all(lab.get(k) == w for k, w in labels.items()) for n, lab, _ in self.rows
        )


@dataclass
class OpsStack:
    settings: Any
    pool: Any
    api_url: str
    metrics_urls: dict[str, str]
    api_key: str = ""  # every scope (a platform key that is also an operator's)
    procs: dict[str, Proc] = field(default_factory=dict)

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.api_url, timeout=30, headers={"Authorization": f"Bearer {self.api_key}"}
        )

    async def scrape(self, process: str) -> Samples:
        async with httpx.AsyncClient(timeout=10) as client:
            reply = await client.get(self.metrics_urls[process])
        assert reply.status_code == 200, reply.text
        assert reply.headers["content-type"].startswith("text/plain")
        return Samples(reply.text)

    def logs(self, process: str) -> str:
        return self.procs[process].log()


async def _wait(what: str, probe: Any, within: float, procs: dict[str, Proc]) -> None:
    deadline = time.monotonic() + within
    while True:
        for name, proc in procs.items():
            assert proc.proc.poll() is None, f"{name} exited:\n{proc.log()[-3000:]}"
        try:
            if await probe():
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not ready in {within}s")
        await asyncio.sleep(0.2)


async def prepare_ops_stack(
    temporal: Any, devnet: Any, redis: Any, pool: Any, **overrides: Any
) -> OpsStack:
    """Settings for api, worker and watcher of `pool` (already deployed; established in the
    ledger here) on a private prefix, task queue and free ports, and an API key of every scope:
    everything but the processes, for a test that starts them its own way. `temporal` is the
    session's WorkflowEnvironment or a Client of another server (the processes get its address)."""
    from api.auth.keys import ApiKeyStore
    from api.auth.principal import SCOPES
    from reconcile.reconciler import establish_pool
    from runtime import clients

    prefix = f"test-ops-{uuid.uuid4().hex[:10]}"
    client = getattr(temporal, "client", temporal)
    settings = stack_settings(
        client.service_client.config.target_host,
        devnet,
        prefix=prefix,
        task_queue=f"ops-{uuid.uuid4().hex[:8]}",
    )
    ports = {name: free_port() for name in ("api", "worker", "watcher")}
    settings.pools = {pool.pool_id: pool.creditline_id}
    settings.admin_token = f"operator-{uuid.uuid4().hex}"
    settings.jwt_secret = secrets.token_urlsafe(48)
    settings.sep10_signing_secret = Keypair.random().secret
    settings.api_port = free_port()
    settings.api_metrics_port = ports["api"]
    settings.worker_metrics_port = ports["worker"]
    settings.watcher_metrics_port = ports["watcher"]
    for name, value in overrides.items():
        setattr(settings, name, value)

    chain = clients.chain_client(settings)
    try:
        await establish_pool(clients.ledger(settings, redis), chain, pool.pool_id)
    finally:
        await chain.close()

    stack = OpsStack(
        settings=settings,
        pool=pool,
        api_url=f"http://127.0.0.1:{settings.api_port}",
        metrics_urls={n: f"http://127.0.0.1:{p}/metrics" for n, p in ports.items()},
    )
    _, stack.api_key = await ApiKeyStore(redis, prefix=prefix).create("tests/ops", SCOPES)
    return stack


async def api_ready(stack: OpsStack) -> bool:
    async with httpx.AsyncClient(timeout=5) as client:
        return (await client.get(f"{stack.api_url}/readyz")).status_code == 200


async def worker_polling(stack: OpsStack) -> bool:
    samples = await stack.scrape("worker")
    return samples.has("temporal_num_pollers", poller_type="workflow_task")


async def watcher_up(stack: OpsStack) -> bool:
    return (await stack.scrape("watcher")).has("watcher_leader")


@asynccontextmanager
async def ops_stack(
    temporal_env: Any, devnet: Any, redis: Any, pool: Any, **overrides: Any
) -> AsyncIterator[OpsStack]:
    """Start api, worker and watcher for `pool` (already deployed); settings `overrides` apply
    to all three. Stopped by their PIDs, keys deleted, on exit."""
    stack = await prepare_ops_stack(temporal_env, devnet, redis, pool, **overrides)
    settings = stack.settings
    try:
        stack.procs["worker"] = Proc("worker.py", settings)
        stack.procs["watcher"] = Proc("watcher.py", settings)
        stack.procs["api"] = Proc("api", settings, argv=["-m", "api"])
        await _wait("the API", lambda: api_ready(stack), 60, stack.procs)
        await _wait("the worker", lambda: worker_polling(stack), 60, stack.procs)
        await _wait("the watcher", lambda: watcher_up(stack), 60, stack.procs)
        yield stack
    finally:
        for proc in stack.procs.values():
            proc.stop()
        await delete_prefix(redis, settings.ledger_prefix)
