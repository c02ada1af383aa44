"""The channel-account pool against a real devnet and a real Redis (single node and Cluster):
one transaction in flight per channel, a sequence knocked out of step recovers, TRY_AGAIN_LATER
is waited out, and no free channel is a clear ChannelsBusy with nothing sent."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from stellar_sdk import Account, Keypair, SorobanServerAsync, TransactionBuilder

from channels.pool import ChannelPool, ChannelsBusy, Sent
from devnet.kit import devnet_call, fund_account, wait_for_tx
from tests.fixtures.redis import client_for, delete_prefix


@pytest.fixture
async def topology_redis(redis_topology, key_prefix) -> AsyncIterator[tuple[object, str]]:
    client = client_for(redis_topology)
    await client.ping()  # one round trip before the concurrent ones: the cluster's slot map
    try:
        yield client, key_prefix
    finally:
        await delete_prefix(client, key_prefix)
        await client.aclose()


async def _channels(devnet, n: int) -> list[Keypair]:
    kps = [Keypair.random() for _ in range(n)]
    await asyncio.gather(*(fund_account(devnet.rpc_url, k.public_key) for k in kps))
    return kps


def _builder(devnet, contract: str):
    """A build callback: a cheap read-only call as the channel (it applies like any call)."""

    async def build(channel: Keypair, sequence: int) -> tuple[str, str]:
        server = SorobanServerAsync(devnet.rpc_url)
        try:
            tx = (
                TransactionBuilder(
                    Account(channel.public_key, sequence - 1), devnet.passphrase, 100
                )
                .append_invoke_contract_function_op(contract, "get_pool_stats", [])
                .add_time_bounds(0, int(time.time()) + 60)
                .build()
            )
            prepared = await server.prepare_transaction(tx)
        finally:
            await server.close()
        prepared.sign(channel)
        return prepared.to_xdr(), prepared.hash_hex()

    return build


async def _send_retrying(pool: ChannelPool, build, max_time: int) -> Sent:
    for _ in range(100):
        try:
            return await pool.send(build, max_time=max_time)
        except ChannelsBusy as busy:
            assert busy.retry_after >= 1
            await asyncio.sleep(0.1)
    raise AssertionError("never got a channel")


async def test_one_transaction_in_flight_per_channel(
    devnet, deploy_pool, chain_client, topology_redis
) -> None:
    redis, prefix = topology_redis
    pool_contract = await deploy_pool(liquidity=0)
    channels = await _channels(devnet, 2)
    pool = ChannelPool(
        redis, chain_client, [k.secret for k in channels], prefix=prefix, wait_seconds=0.2
    )
    build = _builder(devnet, pool_contract.pool_id)
    max_time = int(time.time()) + 60
    sent = await asyncio.gather(*(_send_retrying(pool, build, max_time) for _ in range(8)))
    statuses = await asyncio.gather(*(wait_for_tx(chain_client, s.tx_hash) for s in sent))
    assert [s.status for s in statuses] == ["success"] * 8
    by_channel: dict[str, list[tuple[int, int]]] = {}
    for s, st in zip(sent, statuses, strict=True):
        assert st.ledger is not None
        by_channel.setdefault(s.channel, []).append((s.sequence, st.ledger))
    assert set(by_channel) <= {k.public_key for k in channels}
    for rows in by_channel.values():
        rows.sort()
        seqs = [q for q, _ in rows]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # no gap, no reuse
        ledgers = [led for _, led in rows]
        # one in flight: each of a channel's transactions landed in a later ledger
        assert ledgers == sorted(set(ledgers)), rows
    assert sum(s.resyncs for s in sent) == 0


async def test_sequence_knocked_out_of_step_recovers(
    devnet, deploy_pool, chain_client, topology_redis
) -> None:
    redis, prefix = topology_redis
    pool_contract = await deploy_pool(liquidity=0)
    (channel,) = await _channels(devnet, 1)
    pool = ChannelPool(redis, chain_client, [channel.secret], prefix=prefix, wait_seconds=5)
    build = _builder(devnet, pool_contract.pool_id)
    max_time = int(time.time()) + 60
    first = await pool.send(build, max_time=max_time)
    assert (await wait_for_tx(chain_client, first.tx_hash)).status == "success"
    current = await chain_client.account_sequence(channel.public_key)
    await devnet_call(
        devnet.rpc_url,
        "devnet_bumpSequence",
        {"account": channel.public_key, "sequence": current + 7},
    )
    second = await pool.send(build, max_time=max_time)  # cached sequence is stale: txBAD_SEQ
    assert (second.resyncs, second.sequence) == (1, current + 8)
    assert (await wait_for_tx(chain_client, second.tx_hash)).status == "success"


async def test_try_again_later_is_waited_out_and_busy_is_clear(
    devnet, deploy_pool, chain_client, topology_redis
) -> None:
    redis, prefix = topology_redis
    pool_contract = await deploy_pool(liquidity=0)
    (channel,) = await _channels(devnet, 1)
    pool = ChannelPool(
        redis,
        chain_client,
        [channel.secret],
        prefix=prefix,
        wait_seconds=0,
        backoff_seconds=0.05,
        try_again_attempts=3,
    )
    build = _builder(devnet, pool_contract.pool_id)
    max_time = int(time.time()) + 60
    await devnet_call(devnet.rpc_url, "devnet_tryAgainLater", {"count": 2})
    sent = await pool.send(build, max_time=max_time)
    assert sent.retries == 2
    # the channel's transaction is in flight: a second send finds no channel, sends nothing
    before = await chain_client.account_sequence(channel.public_key)
    with pytest.raises(ChannelsBusy) as busy:
        await pool.send(build, max_time=max_time)
    assert busy.value.retry_after >= 1
    assert (await wait_for_tx(chain_client, sent.tx_hash)).status == "success"
    assert await chain_client.account_sequence(channel.public_key) == before + 1
    # final now: the channel is free again
    again = await pool.send(build, max_time=max_time)
    assert (await wait_for_tx(chain_client, again.tx_hash)).status == "success"
    # more TRY_AGAIN_LATER than the attempts: busy, the lease is given back
    await devnet_call(devnet.rpc_url, "devnet_tryAgainLater", {"count": 10})
    with pytest.raises(ChannelsBusy):
        await pool.send(build, max_time=max_time)
    await devnet_call(devnet.rpc_url, "devnet_tryAgainLater", {"count": 0})
    pool.wait_seconds = 5
    last = await pool.send(build, max_time=max_time)
    assert (await wait_for_tx(chain_client, last.tx_hash)).status == "success"


@pytest.mark.parametrize("mode", ["mid_build", "after_submit"])
async def test_a_holder_killed_with_its_lease_frees_the_channel(
    devnet, deploy_pool, chain_client, redis_topology, key_prefix, mode: str
) -> None:
    """A real process leases the only channel and is SIGKILLed by PID: mid-build (no
    transaction: its lease expires after build_seconds) or with its transaction in flight (the
    channel is freed once that transaction is final). Another client then gets the channel and
    its transaction lands on the next sequence."""
    import os
    import signal
    import sys

    kind, url = redis_topology
    pool_contract = await deploy_pool(liquidity=0)
    (channel,) = await _channels(devnet, 1)
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.channels.crashing_holder",
        url,
        kind,
        key_prefix,
        devnet.rpc_url,
        devnet.passphrase,
        channel.secret,
        pool_contract.pool_id,
        mode,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        line = (await asyncio.wait_for(child.stdout.readline(), 30)).decode()
        assert line.startswith("BUILDING" if mode == "mid_build" else "SENT"), line
        os.kill(child.pid, signal.SIGKILL)
        await asyncio.wait_for(child.wait(), 10)
    finally:
        if child.returncode is None:
            os.kill(child.pid, signal.SIGKILL)
            await child.wait()
    redis = client_for(redis_topology)
    try:
        await redis.ping()
        pool = ChannelPool(redis, chain_client, [channel.secret], prefix=key_prefix, wait_seconds=0)
        if mode == "mid_build":  # the dead holder's lease stands until its build time is up
            with pytest.raises(ChannelsBusy):
                await pool.send(_builder(devnet, pool_contract.pool_id), max_time=0)
        pool.wait_seconds = 20
        if mode == "after_submit":  # the dead holder's transaction still lands
            first = await wait_for_tx(chain_client, line.split()[1], 15)
            assert first.status == "success"
        before = await chain_client.account_sequence(channel.public_key)
        sent = await pool.send(
            _builder(devnet, pool_contract.pool_id), max_time=int(time.time()) + 60
        )
        assert (await wait_for_tx(chain_client, sent.tx_hash)).status == "success"
        assert sent.sequence == before + 1
    finally:
        await redis.aclose()
