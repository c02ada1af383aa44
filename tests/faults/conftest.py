"""The live stack the fault module breaks: a Temporal dev server and a devnet of its own (so
pausing them by PID disturbs no other test), the real Redis under a private prefix, and the
product's api, worker and watcher as subprocesses (tests/ops/stack), for one pool."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from stellar_sdk import Keypair
from temporalio.client import Client

from chain.client import ChainClient
from core.money import UNIT
from core.settings import Settings
from devnet.kit import DevnetProcess, deploy_pool, new_funded_keypair
from liquidity.ledger import Ledger
from runtime import clients
from tests.fixtures.devnet import LEDGER_INTERVAL, running_devnet
from tests.fixtures.redis import REDIS_URL
from tests.ops.stack import OpsStack, ops_stack
from tools.procs import Child, Supervisor
from tools.stack import start_temporal


@dataclass
class Live:
    ops: OpsStack  # .settings, .pool, .procs["worker" | "watcher" | "api"], .http()
    temporal: Child  # the dev server's process
    devnet: DevnetProcess
    client: Client
    ledger: Ledger
    chain: ChainClient
    redis: Any
    vendor: Keypair
    keys: dict[str, str] = field(default_factory=dict)  # every loan id opened -> its key
    borrower_of: dict[str, Keypair] = field(default_factory=dict)  # loan id -> its borrower
    answers: dict[str, str] = field(default_factory=dict)  # loan id -> its POST's last answer

    @property
    def pool_id(self) -> str:
        pool_id: str = self.ops.pool.pool_id
        return pool_id


@pytest.fixture(scope="module")
async def live(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Live]:
    tmp: Path = tmp_path_factory.mktemp("faults")
    sup = Supervisor(tmp / "logs")
    redis = aioredis.from_url(REDIS_URL, decode_responses=True)
    try:
        # start_temporal probes with an event loop of its own: a thread of its own too, where
        # it starts while the devnet does
        temporal = asyncio.create_task(asyncio.to_thread(start_temporal, sup, tmp / "temporal.db"))
        await asyncio.sleep(0)
        with running_devnet(ledger_interval=LEDGER_INTERVAL) as devnet:
            address, _ = await temporal
            client = await clients.temporal_client(
                Settings(_env_file=None, temporal_address=address)
            )
            pool = await deploy_pool(devnet.rpc_url, devnet.passphrase, liquidity=1_000 * UNIT)
            vendor = await new_funded_keypair(devnet.rpc_url)
            async with ops_stack(
                client,
                devnet,
                redis,
                pool,
                # the module opens many loans for few borrowers: squatting limits are not
                # what it tests
                max_unsigned_per_borrower=1_000,
                loan_rate_per_borrower_per_minute=10_000,
                reservation_ttl_seconds=600,  # no loan of the module expires while it runs
            ) as ops:
                chain = clients.chain_client(ops.settings)
                try:
                    yield Live(
                        ops=ops,
                        temporal=sup.children[0],
                        devnet=devnet,
                        client=client,
                        ledger=clients.ledger(ops.settings, redis),
                        chain=chain,
                        redis=redis,
                        vendor=vendor,
                    )
                finally:
                    await chain.close()
    finally:
        sup.stop_all()
        await redis.aclose()
