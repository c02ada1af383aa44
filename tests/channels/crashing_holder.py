"""A channel-pool client that dies holding its lease: run as a child process by
tests/channels/test_pool.py and SIGKILLed there. argv: redis_url cluster prefix rpc_url
passphrase channel_secret contract mode, mode `mid_build` (killed while building, before any
transaction exists) or `after_submit` (killed with its transaction accepted and in flight)."""

from __future__ import annotations

import asyncio
import sys
import time

from stellar_sdk import Account, Keypair, SorobanServerAsync, TransactionBuilder

from chain.client import ChainClient
from channels.pool import ChannelPool
from liquidity.connection import connect_redis


async def main() -> None:
    redis_url, cluster, prefix, rpc_url, passphrase, secret, contract, mode = sys.argv[1:9]
    redis = connect_redis(redis_url, cluster=cluster == "cluster")
    chain = ChainClient(rpc_url, passphrase)
    pool = ChannelPool(redis, chain, [secret], prefix=prefix, wait_seconds=5, build_seconds=5)

    async def build(channel: Keypair, sequence: int) -> tuple[str, str]:
        if mode == "mid_build":
            print("BUILDING", flush=True)
            await asyncio.sleep(3600)
        server = SorobanServerAsync(rpc_url)
        tx = (
            TransactionBuilder(Account(channel.public_key, sequence - 1), passphrase, 100)
            .append_invoke_contract_function_op(contract, "get_pool_stats", [])
            .add_time_bounds(0, int(time.time()) + 60)
            .build()
        )
        prepared = await server.prepare_transaction(tx)
        await server.close()
        prepared.sign(channel)
        return prepared.to_xdr(), prepared.hash_hex()

    sent = await pool.send(build, max_time=int(time.time()) + 60)
    print(f"SENT {sent.tx_hash}", flush=True)
    await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main())
