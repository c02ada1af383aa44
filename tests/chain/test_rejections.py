"""Every rejection the network makes, produced with a real envelope and asserted by result code."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from stellar_sdk import Keypair, SorobanServerAsync, TransactionBuilder, TransactionEnvelope, scval
from stellar_sdk import xdr as sx

from chain import decode
from chain.client import ChainClient
from chain.envelope import sign_envelope
from chain.errors import ChainRefusal
from chain.types import FailureReason
from core.money import UNIT
from devnet.kit import DevnetProcess, devnet_call, wait_for_tx
from devnet.kit import deploy_pool as kit_deploy_pool
from tests.chain.helpers import expiry, loan_terms
from tests.fixtures.devnet import running_devnet


async def _funding(client: ChainClient, pool, borrower: Keypair, *, max_time: int) -> str:
    terms = loan_terms(borrower.public_key, total=10 * UNIT, guarantee=2 * UNIT)
    funding = await client.build_funding_tx(pool.creditline_id, terms, max_time=max_time)
    return funding.xdr


async def test_wrong_key_is_bad_auth(chain_client, deploy_pool, new_borrower, devnet) -> None:
    pool = await deploy_pool(liquidity=100 * UNIT)
    borrower = await new_borrower(pool)
    xdr = await _funding(chain_client, pool, borrower, max_time=expiry())
    signed = sign_envelope(xdr, Keypair.random().secret, devnet.passphrase)
    result = await chain_client.submit(signed)
    assert (result.status, result.reason, result.detail) == (
        "error",
        FailureReason.BAD_AUTH,
        "txBAD_AUTH",
    )
    # unsigned is refused the same way
    result = await chain_client.submit(xdr)
    assert result.reason == FailureReason.BAD_AUTH


async def test_stale_sequence_is_bad_seq(chain_client, deploy_pool, new_borrower, devnet) -> None:
    pool = await deploy_pool(liquidity=100 * UNIT)
    borrower = await new_borrower(pool)
    first = sign_envelope(
        await _funding(chain_client, pool, borrower, max_time=expiry()),
        borrower.secret,
        devnet.passphrase,
    )
    second = sign_envelope(
        await _funding(chain_client, pool, borrower, max_time=expiry() + 1),
        borrower.secret,
        devnet.passphrase,
    )
    sent = await chain_client.submit(first)
    assert sent.status == "pending"
    assert (await wait_for_tx(chain_client, sent.tx_hash)).status == "success"
    result = await chain_client.submit(second)  # built for the same sequence number
    assert (result.status, result.reason, result.detail) == (
        "error",
        FailureReason.BAD_SEQ,
        "txBAD_SEQ",
    )


async def test_expired_time_bounds_is_too_late(
    chain_client, deploy_pool, new_borrower, devnet
) -> None:
    pool = await deploy_pool(liquidity=100 * UNIT)
    borrower = await new_borrower(pool)
    xdr = await _funding(chain_client, pool, borrower, max_time=int(time.time()) - 5)
    result = await chain_client.submit(sign_envelope(xdr, borrower.secret, devnet.passphrase))
    assert (result.status, result.reason, result.detail) == (
        "error",
        FailureReason.TOO_LATE,
        "txTOO_LATE",
    )


async def _prepared_deposit(
    devnet: DevnetProcess,
    pool,
    lp: Keypair,
    *,
    min_time: int = 0,
    max_time: int = 0,
    prepare: bool = True,
) -> TransactionEnvelope:
    server = SorobanServerAsync(devnet.rpc_url)
    try:
        account = await server.load_account(lp.public_key)
        tx = (
            TransactionBuilder(account, devnet.passphrase, 100)
            .append_invoke_contract_function_op(
                pool.pool_id, "deposit", [scval.to_address(lp.public_key), scval.to_int128(UNIT)]
            )
            .add_time_bounds(min_time, max_time)
            .build()
        )
        return await server.prepare_transaction(tx) if prepare else tx
    finally:
        await server.close()


async def test_future_min_time_is_too_early(
    chain_client, deploy_pool, new_borrower, devnet
) -> None:
    pool = await deploy_pool(liquidity=100 * UNIT)
    lp = await new_borrower(pool)
    env = await _prepared_deposit(devnet, pool, lp, min_time=int(time.time()) + 3600)
    env.sign(lp)
    result = await chain_client.submit(env.to_xdr())
    assert (result.reason, result.detail) == (FailureReason.TOO_EARLY, "txTOO_EARLY")


async def test_low_fee_is_insufficient_fee(chain_client, deploy_pool, new_borrower, devnet) -> None:
    pool = await deploy_pool(liquidity=100 * UNIT)
    lp = await new_borrower(pool)
    # not prepared: no resource fee declared at all
    bare = await _prepared_deposit(devnet, pool, lp, prepare=False)
    bare.sign(lp)
    result = await chain_client.submit(bare.to_xdr())
    assert (result.reason, result.detail) == (FailureReason.INSUFFICIENT_FEE, "txINSUFFICIENT_FEE")
    # prepared, then one stroop short of base fee + declared resource fee
    env = await _prepared_deposit(devnet, pool, lp)
    env.transaction.fee -= 101
    env.sign(lp)
    result = await chain_client.submit(env.to_xdr())
    assert (result.reason, result.detail) == (FailureReason.INSUFFICIENT_FEE, "txINSUFFICIENT_FEE")
    # a declared resource fee below the schedule for the declared resources is refused too
    env = await _prepared_deposit(devnet, pool, lp)
    assert env.transaction.soroban_data is not None
    env.transaction.soroban_data.resource_fee = sx.Int64(1)
    env.sign(lp)
    result = await chain_client.submit(env.to_xdr())
    assert result.reason == FailureReason.INSUFFICIENT_FEE
    # the untouched prepared transaction goes through: the refusals were about the fee only
    env = await _prepared_deposit(devnet, pool, lp)
    env.sign(lp)
    assert (await chain_client.submit(env.to_xdr())).status == "pending"


async def test_duplicate_submission(chain_client, deploy_pool, new_borrower, devnet) -> None:
    pool = await deploy_pool(liquidity=100 * UNIT)
    borrower = await new_borrower(pool)
    signed = sign_envelope(
        await _funding(chain_client, pool, borrower, max_time=expiry()),
        borrower.secret,
        devnet.passphrase,
    )
    first, second = await asyncio.gather(chain_client.submit(signed), chain_client.submit(signed))
    assert sorted([first.status, second.status]) == ["duplicate", "pending"]
    status = await wait_for_tx(chain_client, first.tx_hash)
    assert status.status == "success"


async def test_unknown_account(chain_client, deploy_pool, devnet) -> None:
    pool = await deploy_pool(liquidity=100 * UNIT)
    ghost = Keypair.random()
    with pytest.raises(ChainRefusal) as refused:
        await chain_client.build_funding_tx(
            pool.creditline_id,
            loan_terms(ghost.public_key, total=10 * UNIT, guarantee=2 * UNIT),
            max_time=expiry(),
        )
    assert refused.value.reason == FailureReason.NO_ACCOUNT
    # an envelope from an account that does not exist is refused with txNO_ACCOUNT
    tx = (
        TransactionBuilder(
            __import__("stellar_sdk").Account(ghost.public_key, 1), devnet.passphrase, 100
        )
        .append_invoke_contract_function_op(pool.pool_id, "get_pool_stats", [])
        .set_timeout(60)
        .build()
    )
    tx.sign(ghost)
    result = await chain_client.submit(tx.to_xdr())
    assert (result.reason, result.detail) == (FailureReason.NO_ACCOUNT, "txNO_ACCOUNT")


async def test_garbage_envelope_is_malformed(chain_client) -> None:
    with pytest.raises(ChainRefusal) as refused:
        await chain_client.submit("AAAA-not-an-envelope")
    assert refused.value.reason == FailureReason.MALFORMED


# --- a transaction that expires while queued fails in the ledger with txTOO_LATE ------------------
@pytest.fixture(scope="module")
def manual_devnet() -> Iterator[DevnetProcess]:
    """A devnet whose ledgers only close when the test says so (interval of an hour)."""
    with running_devnet(ledger_interval=3600) as proc:
        yield proc


@contextlib.asynccontextmanager
async def _closing_ledgers(rpc_url: str, every: float = 0.1) -> AsyncIterator[None]:
    async def loop() -> None:
        while True:
            await devnet_call(rpc_url, "devnet_closeLedger", {})
            await asyncio.sleep(every)

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_expiring_while_queued_fails_too_late_in_ledger(manual_devnet) -> None:
    rpc, phrase = manual_devnet.rpc_url, manual_devnet.passphrase
    async with _closing_ledgers(rpc):
        pool = await kit_deploy_pool(rpc, phrase, liquidity=100 * UNIT)
    from devnet.kit import new_funded_keypair

    borrower = await new_funded_keypair(rpc, token_id=pool.token_id, token_amount=100 * UNIT)
    client = ChainClient(rpc, phrase)
    try:
        max_time = int(time.time()) + 1
        xdr = await _funding(client, pool, borrower, max_time=max_time)
        sent = await client.submit(sign_envelope(xdr, borrower.secret, phrase))
        assert sent.status == "pending"
        await asyncio.sleep(max_time + 1.05 - time.time())  # expiry passes while it is queued
        await devnet_call(rpc, "devnet_closeLedger", {})
        status = await client.transaction(sent.tx_hash)
        assert (status.status, status.reason, status.detail) == (
            "failed",
            FailureReason.TOO_LATE,
            "txTOO_LATE",
        )
        server = SorobanServerAsync(rpc)
        raw = await server.get_transaction(sent.tx_hash)
        await server.close()
        assert raw.result_xdr is not None
        assert decode.result_code(raw.result_xdr) == sx.TransactionResultCode.txTOO_LATE
        stats = await client.pool_stats(pool.pool_id)
        assert stats.locked_liquidity == 0  # nothing moved
        # the sequence number was not consumed: a fresh build uses the same one again
        again = await client.build_funding_tx(
            pool.creditline_id,
            loan_terms(borrower.public_key, total=10 * UNIT, guarantee=2 * UNIT),
            max_time=expiry(),
        )
        assert again.sequence == TransactionEnvelope.from_xdr(xdr, phrase).transaction.sequence
    finally:
        await client.close()
