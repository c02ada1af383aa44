"""The bug this project exists for: two funding transactions built against the same liquidity
(no reservation), both signed; the first lands, the second fails on chain with Error(Contract, #5)
after the borrower has signed and paid the fee."""

from __future__ import annotations

import asyncio

from stellar_sdk import SorobanServerAsync
from stellar_sdk import xdr as sx

from chain import decode
from chain.envelope import sign_envelope
from chain.types import FailureReason
from core.money import UNIT
from devnet.kit import token_balance, wait_for_tx
from tests.chain.helpers import expiry, loan_terms


async def test_two_unreserved_fundings_second_fails_on_chain(
    chain_client,
    deploy_pool,
    new_borrower,
    devnet,
) -> None:
    pool = await deploy_pool(liquidity=100 * UNIT)
    alice, bob = await new_borrower(pool), await new_borrower(pool)
    terms_a = loan_terms(alice.public_key, total=75 * UNIT, guarantee=15 * UNIT)  # pool funds 60
    terms_b = loan_terms(bob.public_key, total=75 * UNIT, guarantee=15 * UNIT)  # pool funds 60

    # both pass the liquidity check (simulation) against the same 100 units
    before = await chain_client.pool_stats(pool.pool_id)
    assert before.available_liquidity == 100 * UNIT
    fund_a = await chain_client.build_funding_tx(pool.creditline_id, terms_a, max_time=expiry())
    fund_b = await chain_client.build_funding_tx(pool.creditline_id, terms_b, max_time=expiry())
    signed_a = sign_envelope(fund_a.xdr, alice.secret, devnet.passphrase)
    signed_b = sign_envelope(fund_b.xdr, bob.secret, devnet.passphrase)
    bob_tokens = await token_balance(
        devnet.rpc_url, devnet.passphrase, pool.token_id, bob.public_key
    )
    server = SorobanServerAsync(devnet.rpc_url)
    bob_xlm_before = (await server.load_account(bob.public_key)).sequence

    sent_a = await chain_client.submit(signed_a)
    sent_b = await chain_client.submit(signed_b)
    assert (sent_a.status, sent_b.status) == ("pending", "pending")  # both accepted by the network
    status_a, status_b = await asyncio.gather(
        wait_for_tx(chain_client, fund_a.tx_hash), wait_for_tx(chain_client, fund_b.tx_hash)
    )

    assert status_a.status == "success" and status_a.chain_loan_id == 1
    assert status_b.status == "failed"
    assert status_b.reason == FailureReason.INSUFFICIENT_LIQUIDITY
    assert status_b.detail == "Error(Contract, #5)"
    assert status_b.ledger is not None and status_b.ledger >= (status_a.ledger or 0)

    raw = await server.get_transaction(fund_b.tx_hash)
    assert raw.result_xdr is not None
    result = sx.TransactionResult.from_xdr(raw.result_xdr)
    assert result.result.code == sx.TransactionResultCode.txFAILED
    assert result.fee_charged.int64 > 0  # Bob paid for the failure
    assert (await server.load_account(bob.public_key)).sequence == bob_xlm_before + 1  # consumed
    assert decode.error_from_diagnostics(raw.diagnostic_events_xdr or []) == (
        "Contract",
        "5",
        pool.creditline_id,
    )
    await server.close()

    after = await chain_client.pool_stats(pool.pool_id)
    assert after.total_liquidity == 100 * UNIT
    assert after.locked_liquidity == 60 * UNIT
    assert after.available_liquidity == 40 * UNIT
    # the failed transaction left no trace in the contracts: Bob's guarantee was not taken
    assert (
        await token_balance(devnet.rpc_url, devnet.passphrase, pool.token_id, bob.public_key)
        == bob_tokens
    )
