"""The API under test: uvicorn serving create_app(saga_stack.settings) on a free 127.0.0.1 port,
in the session's event loop, so requests travel over real HTTP while the app shares the worker's
and watcher's Settings object (pools a test registers are visible to all three).

Credentials: the settings get real secrets (the API refuses to start without them), and the
session creates one API key with every scope, which the `http` client sends; `anon` sends none.
Tests of who-may-do-what create their own keys and tokens (tests/api/credentials.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from stellar_sdk import Keypair

from api.app import create_app
from api.auth.keys import ApiKeyStore
from api.auth.principal import SCOPES
from tools.procs import free_port

ADMIN_TOKEN = f"admin-{uuid.uuid4().hex}"
JWT_SECRET = f"jwt-{uuid.uuid4().hex}{uuid.uuid4().hex}"
SEP10_KEYPAIR = Keypair.random()


@dataclass
class ApiServer:
    base_url: str
    settings: Any
    keys: ApiKeyStore  # the key store the API reads (same Redis, same prefix)
    full_key: str  # an API key with every scope: what the `http` client sends
    app: Any  # the FastAPI app being served (app.state.services once started)


@pytest.fixture(scope="session")
async def api_server(saga_stack: Any) -> AsyncIterator[ApiServer]:
    settings = saga_stack.settings
    settings.admin_token = ADMIN_TOKEN
    settings.jwt_secret = JWT_SECRET
    settings.sep10_signing_secret = SEP10_KEYPAIR.secret
    port = free_port()
    settings.public_url = f"http://127.0.0.1:{port}"
    keys = ApiKeyStore(saga_stack.redis, prefix=settings.ledger_prefix)
    # The suite shares this key: limits no test should meet (tests of limits make their own).
    _, full_key = await keys.create(
        "tests: every scope", SCOPES, rate_per_minute=1_000_000, max_unsigned=1_000_000
    )
    app = create_app(settings)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(), name="api-under-test")
    for _ in range(200):
        if server.started or task.done():
            break
        await asyncio.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield ApiServer(f"http://127.0.0.1:{port}", settings, keys, full_key, app)
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
    """A client with an every-scope API key (a platform key that is also an operator's)."""
    async with httpx.AsyncClient(
        base_url=api_server.base_url,
        timeout=30,
        headers={"Authorization": f"Bearer {api_server.full_key}"},
    ) as client:
        yield client


@pytest.fixture
async def anon(api_server: ApiServer) -> AsyncIterator[httpx.AsyncClient]:
    """A client that sends no credential (add one per request to test a specific caller)."""
    async with httpx.AsyncClient(base_url=api_server.base_url, timeout=30) as client:
        yield client


@pytest.fixture
def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}
