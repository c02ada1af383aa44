"""Container healthchecks for processes that serve no HTTP (docker-compose `healthcheck`).

`python -m tools.healthcheck worker`: the task queue has a poller seen in the last minute, i.e.
some worker is actually taking work (a live process that lost Temporal would not be).
`python -m tools.healthcheck deps`: Redis and the chain RPC answer (what the watcher needs).
Exit code 0 = healthy."""

from __future__ import annotations

import asyncio
import sys
import time

import httpx
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

from core.process_exit import exit_skipping_teardown
from core.settings import get_settings
from runtime.clients import redis_client, temporal_client

POLLER_FRESH_S = 60


async def worker_polling() -> bool:
    settings = get_settings()
    client = await temporal_client(settings)
    reply = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=settings.temporal_namespace,
            task_queue=TaskQueue(name=settings.task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    now = time.time()
    return any(now - p.last_access_time.seconds < POLLER_FRESH_S for p in reply.pollers)


async def deps_answer() -> bool:
    settings = get_settings()
    redis = redis_client(settings)
    try:
        await redis.ping()
    finally:
        await redis.aclose()
    async with httpx.AsyncClient(timeout=5) as http:
        reply = await http.post(
            settings.rpc_url, json={"jsonrpc": "2.0", "id": 1, "method": "getHealth"}
        )
    return bool(reply.json()["result"]["status"] == "healthy")


def main(argv: list[str]) -> int:
    checks = {"worker": worker_polling, "deps": deps_answer}
    if len(argv) != 1 or argv[0] not in checks:
        print(f"usage: python -m tools.healthcheck {{{'|'.join(checks)}}}", file=sys.stderr)
        return 2
    try:
        healthy = asyncio.run(asyncio.wait_for(checks[argv[0]](), timeout=8))
    except Exception as exc:
        print(f"unhealthy: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print("healthy" if healthy else "unhealthy")
    return 0 if healthy else 1


if __name__ == "__main__":
    exit_skipping_teardown(main(sys.argv[1:]))
