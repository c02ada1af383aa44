"""The RPC serves only recent history. A watcher that was down for longer than that must not ask
for the forgotten ledgers forever (every pass refused, nothing signalled again): it resumes from
the oldest ledger still served and says which ledgers it could not read."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from chain.client import ChainClient
from chain.envelope import sign_envelope
from chain.errors import ChainRefusal
from core.money import UNIT
from devnet.kit import (
    DevnetProcess,
    deploy_pool,
    new_funded_keypair,
    wait_for_tx,
)
from liquidity.ledger import Ledger
from liquidity.tx_index import TxIndex, TxRef
from liquidity.types import Reserved
from reconcile.reconciler import establish_pool
from settlement.watcher import SettlementWatcher
from tests.fixtures.devnet import client_of, running_devnet
from tests.saga.helpers import terms_for

RETENTION = 20  # ledgers
LEDGER_INTERVAL = 0.1  # seconds: the window is 2 s of history


@pytest.fixture(scope="module")
def short_memory_devnet() -> Iterator[DevnetProcess]:
    with running_devnet(ledger_interval=LEDGER_INTERVAL, retention_ledgers=RETENTION) as proc:
        yield proc


@pytest.fixture
async def short_chain(short_memory_devnet: DevnetProcess) -> AsyncIterator[ChainClient]:
    async with client_of(short_memory_devnet) as client:
        yield client


async def wait_until_forgotten(chain: ChainClient, ledger: int) -> int:
    """Wait until `ledger` is older than the RPC's window; returns the oldest ledger served."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        oldest, _ = await chain.history_window()
        if oldest > ledger:
            return oldest
        await asyncio.sleep(LEDGER_INTERVAL)
    raise AssertionError(f"ledger {ledger} never left the retention window")


async def test_the_devnet_forgets_history_like_soroban_rpc(short_memory_devnet, short_chain):
    devnet, chain = short_memory_devnet, short_chain
    pool = await deploy_pool(devnet.rpc_url, devnet.passphrase, liquidity=10 * UNIT)
    deposit_ledger = (await chain.pool_stats(pool.pool_id)).ledger
    page = await chain.events([pool.pool_id], start_ledger=deposit_ledger - 1)
    assert "LQDEPST" in [event.name for event in page.events]

    oldest = await wait_until_forgotten(chain, deposit_ledger)
    window_oldest, latest = await chain.history_window()
    assert window_oldest >= oldest and latest - window_oldest == RETENTION - 1
    with pytest.raises(ChainRefusal, match="startLedger must be between the oldest ledger"):
        await chain.events([pool.pool_id], start_ledger=deposit_ledger)
    page = await chain.events([pool.pool_id], start_ledger=window_oldest)
    assert page.events == []  # the deposit's events are gone with their ledger


async def test_a_pruned_transaction_is_not_found(short_memory_devnet, short_chain):
    devnet, chain = short_memory_devnet, short_chain
    pool = await deploy_pool(devnet.rpc_url, devnet.passphrase, liquidity=10 * UNIT)
    borrower = await new_funded_keypair(devnet.rpc_url, token_id=pool.token_id, token_amount=UNIT)
    vendor = await new_funded_keypair(devnet.rpc_url)
    funding = await chain.build_funding_tx(
        pool.creditline_id,
        terms_for(borrower.public_key, vendor.public_key, UNIT),
        max_time=int(time.time()) + 60,
    )
    sent = await chain.submit(sign_envelope(funding.xdr, borrower.secret, devnet.passphrase))
    landed = await wait_for_tx(chain, sent.tx_hash)
    assert landed.status == "success" and landed.ledger is not None
    await wait_until_forgotten(chain, landed.ledger)
    assert (await chain.transaction(sent.tx_hash)).status == "not_found"


async def test_a_watcher_down_longer_than_retention_resumes_from_the_oldest_ledger(
    short_memory_devnet, short_chain, saga_stack, redis_client, key_prefix, caplog
):
    devnet, chain = short_memory_devnet, short_chain
    ledger = Ledger(redis_client, prefix=key_prefix)
    tx_index = TxIndex(redis_client, prefix=key_prefix)
    pool = await deploy_pool(devnet.rpc_url, devnet.passphrase, liquidity=10 * UNIT)
    await establish_pool(ledger, chain, pool.pool_id)
    watcher = SettlementWatcher(
        settings=saga_stack.settings.model_copy(
            update={"pools": {pool.pool_id: pool.creditline_id}}
        ),
        client=saga_stack.client,  # signals go to loans without a workflow: refused, harmless
        chain=chain,
        ledger=ledger,
        tx_index=tx_index,
    )
    # A first start looks back further than the RPC keeps: merely a shorter look-back.
    await wait_until_forgotten(chain, 1)
    with caplog.at_level(logging.WARNING, logger="watcher"):
        await watcher.step()
    assert (watcher.ledgers_skipped, caplog.records) == (0, [])
    stopped_at = int(await tx_index.cursor() or 0)
    assert stopped_at > 0

    # The watcher is down. Its cursor falls out of the RPC's window, then a saga loan settles.
    await wait_until_forgotten(chain, stopped_at + 1)
    borrower = await new_funded_keypair(devnet.rpc_url, token_id=pool.token_id, token_amount=UNIT)
    vendor = await new_funded_keypair(devnet.rpc_url)
    loan_id = "retention-loan"
    reserved = await ledger.reserve(
        pool.pool_id, loan_id, borrower.public_key, 4 * UNIT, ttl_ms=60_000, borrower_limit=10**15
    )
    assert isinstance(reserved, Reserved)
    funding = await chain.build_funding_tx(
        pool.creditline_id,
        terms_for(borrower.public_key, vendor.public_key, 4 * UNIT),
        max_time=reserved.expires_at_ms // 1000,
    )
    ref = TxRef(
        tx_hash=funding.tx_hash,
        loan_id=loan_id,
        pool_id=pool.pool_id,
        expires_at=funding.max_time,
    )
    owner = await tx_index.claim_funding(
        ref, account=funding.source, sequence=funding.sequence, until=funding.max_time
    )
    assert owner == loan_id
    sent = await chain.submit(sign_envelope(funding.xdr, borrower.secret, devnet.passphrase))
    landed = await wait_for_tx(chain, sent.tx_hash)
    assert landed.status == "success" and landed.ledger is not None

    with caplog.at_level(logging.WARNING, logger="watcher"):
        await watcher.step()  # before the fix: ChainRefusal on every pass, forever

    assert watcher.ledgers_skipped > 0
    assert any("no longer serves the events of ledgers" in r.getMessage() for r in caplog.records)
    assert int(await tx_index.cursor() or 0) >= landed.ledger
    # The settlement after the gap was delivered: consumed in the ledger, snapshot applied.
    status = await ledger.status(pool.pool_id)
    assert (status.reserved, status.active_reservations) == (0, 0)
    assert status.available == 6 * UNIT == status.chain_available
