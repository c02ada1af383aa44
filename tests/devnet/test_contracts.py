"""The contract models as the saga relies on them: funding moves liquidity from available to
locked and tokens to the vendor; refusals come back as typed reasons; repayments unlock."""

from __future__ import annotations

import asyncio

import pytest
from stellar_sdk import Keypair, scval

from chain.envelope import sign_envelope
from chain.errors import ChainRefusal
from chain.types import FailureReason
from core.money import UNIT
from devnet.kit import (
    create_loan_direct,
    deposit,
    fund_account,
    invoke,
    repay_loan,
    token_balance,
    wait_for_tx,
    withdraw,
)
from tests.chain.helpers import expiry, loan_terms


async def test_funding_locks_liquidity_and_pays_the_vendor(
    chain_client,
    deploy_pool,
    new_borrower,
    devnet,
) -> None:
    pool = await deploy_pool(liquidity=500 * UNIT, min_guarantee_bps=1_000)  # 20 of 120
    borrower = await new_borrower(pool, token_amount=50 * UNIT)
    vendor = Keypair.random().public_key
    terms = loan_terms(borrower.public_key, total=120 * UNIT, guarantee=20 * UNIT, vendor=vendor)
    funding = await chain_client.build_funding_tx(pool.creditline_id, terms, max_time=expiry())
    assert funding.source == borrower.public_key
    sent = await chain_client.submit(sign_envelope(funding.xdr, borrower.secret, devnet.passphrase))
    assert (
        sent.tx_hash == funding.tx_hash
    )  # the hash handed out before signing is the one that lands
    status = await wait_for_tx(chain_client, funding.tx_hash)
    assert status.status == "success" and status.chain_loan_id is not None

    stats = await chain_client.pool_stats(pool.pool_id)
    assert (stats.total_liquidity, stats.locked_liquidity, stats.available_liquidity) == (
        500 * UNIT,
        100 * UNIT,
        400 * UNIT,
    )
    assert stats.ledger >= (status.ledger or 0)
    bal = lambda who: token_balance(devnet.rpc_url, devnet.passphrase, pool.token_id, who)  # noqa: E731
    assert await bal(vendor) == 100 * UNIT
    assert await bal(borrower.public_key) == 30 * UNIT  # 20 guarantee escrowed
    assert await bal(pool.creditline_id) == 20 * UNIT
    assert await bal(pool.pool_id) == 400 * UNIT

    # repay in two parts: locked liquidity comes back, then the guarantee is released
    await fund_account(
        devnet.rpc_url, borrower.public_key, token_id=pool.token_id, token_amount=100 * UNIT
    )
    part = await repay_loan(
        devnet.rpc_url,
        devnet.passphrase,
        pool.creditline_id,
        borrower.secret,
        status.chain_loan_id,
        40 * UNIT,
    )
    assert part.status == "success"
    assert (await chain_client.pool_stats(pool.pool_id)).locked_liquidity == 60 * UNIT
    rest = await repay_loan(
        devnet.rpc_url,
        devnet.passphrase,
        pool.creditline_id,
        borrower.secret,
        status.chain_loan_id,
        60 * UNIT,
    )
    assert rest.status == "success"
    stats = await chain_client.pool_stats(pool.pool_id)
    assert (stats.locked_liquidity, stats.available_liquidity) == (0, 500 * UNIT)
    assert await bal(borrower.public_key) == 30 * UNIT + 20 * UNIT  # repaid 100 of 100 minted
    with pytest.raises(ChainRefusal) as refused:  # fully repaid: LoanNotActive (#7)
        await repay_loan(
            devnet.rpc_url,
            devnet.passphrase,
            pool.creditline_id,
            borrower.secret,
            status.chain_loan_id,
            1,
        )
    assert (refused.value.reason, refused.value.detail) == (
        FailureReason.CONTRACT_ERROR,
        "Error(Contract, #7)",
    )


async def test_simulation_refusals_are_typed(chain_client, deploy_pool, new_borrower) -> None:
    pool = await deploy_pool(liquidity=50 * UNIT)
    rich = await new_borrower(pool)
    poor = await new_borrower(pool, token_amount=1 * UNIT)

    async def refusal(terms) -> ChainRefusal:
        with pytest.raises(ChainRefusal) as caught:
            await chain_client.build_funding_tx(pool.creditline_id, terms, max_time=expiry())
        return caught.value

    short = await refusal(loan_terms(rich.public_key, total=75 * UNIT, guarantee=15 * UNIT))
    assert (short.reason, short.detail) == (
        FailureReason.INSUFFICIENT_LIQUIDITY,
        "Error(Contract, #5)",
    )
    thin = await refusal(loan_terms(rich.public_key, total=20 * UNIT, guarantee=1 * UNIT))
    assert (thin.reason, thin.detail) == (
        FailureReason.INSUFFICIENT_GUARANTEE,
        "Error(Contract, #2)",
    )
    broke = await refusal(loan_terms(poor.public_key, total=20 * UNIT, guarantee=5 * UNIT))
    assert (broke.reason, broke.detail) == (
        FailureReason.INSUFFICIENT_BALANCE,
        "Error(Contract, #10)",
    )
    # nothing was changed by any of these simulations
    assert (await chain_client.pool_stats(pool.pool_id)).locked_liquidity == 0


async def test_pool_guards_and_lp_flows(chain_client, deploy_pool, new_borrower, devnet) -> None:
    pool = await deploy_pool(liquidity=100 * UNIT)
    outsider = await new_borrower(pool)
    rpc, phrase = devnet.rpc_url, devnet.passphrase
    # fund_loan only for the registered creditline (#9)
    with pytest.raises(ChainRefusal) as refused:
        await invoke(
            rpc,
            phrase,
            outsider.secret,
            pool.pool_id,
            "fund_loan",
            [
                scval.to_address(outsider.public_key),
                scval.to_address(outsider.public_key),
                scval.to_int128(UNIT),
            ],
        )
    assert (refused.value.reason, refused.value.detail) == (
        FailureReason.NOT_CREDITLINE,
        "Error(Contract, #9)",
    )
    # a second LP deposits, the first withdraws part; shares price at 1:1 with no interest
    assert (
        await deposit(rpc, phrase, pool.pool_id, outsider.secret, 40 * UNIT)
    ).status == "success"
    stats = await chain_client.pool_stats(pool.pool_id)
    assert stats.total_liquidity == 140 * UNIT and stats.share_price == 10_000
    done = await withdraw(rpc, phrase, pool.pool_id, pool.lp_secret, 30 * UNIT)
    assert done.status == "success"
    assert (await chain_client.pool_stats(pool.pool_id)).total_liquidity == 110 * UNIT
    # lock most of it with a loan, then a withdrawal beyond available fails with #6
    borrower = await new_borrower(pool)
    loan = await create_loan_direct(
        rpc,
        phrase,
        pool.creditline_id,
        loan_terms(borrower.public_key, total=125 * UNIT, guarantee=25 * UNIT),
        borrower.secret,
    )
    assert loan.status == "success"
    with pytest.raises(ChainRefusal) as refused:
        await withdraw(rpc, phrase, pool.pool_id, pool.lp_secret, 70 * UNIT)
    assert refused.value.reason == FailureReason.INSUFFICIENT_LIQUIDITY
    assert refused.value.detail == "Error(Contract, #6)"


async def test_concurrent_fundings_never_overdraw_the_pool(
    chain_client,
    deploy_pool,
    new_borrower,
    devnet,
) -> None:
    """Ten borrowers race for a pool that can fund five: the chain lets exactly five land."""
    pool = await deploy_pool(liquidity=100 * UNIT)
    borrowers = await asyncio.gather(*(new_borrower(pool) for _ in range(10)))
    fundings = await asyncio.gather(
        *(
            chain_client.build_funding_tx(
                pool.creditline_id,
                loan_terms(b.public_key, total=25 * UNIT, guarantee=5 * UNIT),
                max_time=expiry(),
            )
            for b in borrowers
        )
    )
    signed = [
        sign_envelope(f.xdr, b.secret, devnet.passphrase)
        for f, b in zip(fundings, borrowers, strict=True)
    ]
    sent = await asyncio.gather(*(chain_client.submit(s) for s in signed))
    assert all(s.status == "pending" for s in sent)
    results = await asyncio.gather(*(wait_for_tx(chain_client, f.tx_hash) for f in fundings))
    ok = [r for r in results if r.status == "success"]
    failed = [r for r in results if r.status == "failed"]
    assert len(ok) == 5 and len(failed) == 5
    assert {r.reason for r in failed} == {FailureReason.INSUFFICIENT_LIQUIDITY}
    assert sorted(r.chain_loan_id for r in ok) == [1, 2, 3, 4, 5]  # type: ignore[type-var]
    stats = await chain_client.pool_stats(pool.pool_id)
    assert stats.locked_liquidity == 5 * 20 * UNIT
    assert stats.available_liquidity == 0
    assert stats.locked_liquidity <= stats.total_liquidity
