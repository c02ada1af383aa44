"""The API under test: uvicorn serving create_app(saga_stack.settings) on a free 127.0.0.1 port,
in the session's event loop, so requests travel over real HTTP while the app shares the worker's
and watcher's Settings object (pools a test registers are visible to all three)."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn

from api.app import create_app

ADMIN_TOKEN = f"admin-{uuid.uuid4().hex}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class ApiServer:
    base_url: str
    settings: Any


@pytest.fixture(scope="session")
async def api_server(saga_stack: Any) -> AsyncIterator[ApiServer]:
    saga_stack.settings.admin_token = ADMIN_TOKEN
    port = free_port()
    config = uvicorn.Config(create_app(saga_stack.settings), host="127.0.0.1", port=port,
                            log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(), name="api-under-test")
    for _ in range(200):
        if server.started or task.done():
            break
        await asyncio.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield ApiServer(f"http://127.0.0.1:{port}", saga_stack.settings)
    server.should_exit = True
    await asyncio.wait_for(task, timeout=15)


@pytest.fixture(scope="session")
async def shared_pool(saga_stack: Any, devnet: Any) -> Any:
    """One established pool for tests that only need *a* configured pool (validation, auth):
    registering made-up pool ids would send the shared watcher after contracts that do not
    exist."""
    from devnet.kit import deploy_pool

    pool = await deploy_pool(devnet.rpc_url, devnet.passphrase, liquidity=1_000 * 10_000_000)
    await saga_stack.add_pool(pool)
    return pool


@pytest.fixture
async def http(api_server: ApiServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api_server.base_url, timeout=30) as client:
        yield client


@pytest.fixture
def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}
