"""StepFi's create_loan checks on the devnet, in the contract's order: guarantee (#2), vendor
registry (#3 / #16 / #17), reputation (#4), liquidity (#5), exposure cap (#18). Each refusal is
the simulation's typed reason, so the service can tell the borrower which check failed."""

from __future__ import annotations

import pytest
from stellar_sdk import Keypair

from chain.errors import ChainRefusal
from chain.types import FailureReason
from core.money import UNIT
from devnet.kit import (
    create_loan_direct,
    deploy_pool,
    devnet_call,
    new_funded_keypair,
    set_reputation,
    set_vendor,
)
from tests.chain.helpers import expiry, loan_terms
from tests.fixtures.devnet import client_of, running_devnet


async def _refusal(chain_client, creditline: str, terms) -> ChainRefusal:
    with pytest.raises(ChainRefusal) as caught:
        await chain_client.build_funding_tx(creditline, terms, max_time=expiry())
    return caught.value


async def test_inactive_vendor_is_refused_3(
    chain_client, deploy_pool, new_borrower, devnet
) -> None:
    pool = await deploy_pool(liquidity=100 * UNIT)
    borrower = await new_borrower(pool)
    vendor = Keypair.random().public_key
    await set_vendor(devnet.rpc_url, vendor, active=False)  # suspended in the registry
    terms = loan_terms(borrower.public_key, total=10 * UNIT, guarantee=2 * UNIT, vendor=vendor)
    refused = await _refusal(chain_client, pool.creditline_id, terms)
    assert (refused.reason, refused.detail) == (
        FailureReason.VENDOR_NOT_ACTIVE,
        "Error(Contract, #3)",
    )
    await set_vendor(devnet.rpc_url, vendor, active=True)  # approved again: the loan builds
    funding = await chain_client.build_funding_tx(pool.creditline_id, terms, max_time=expiry())
    assert funding.tx_hash


async def test_no_registry_is_16_and_a_failing_registry_is_17(
    chain_client, new_borrower, devnet
) -> None:
    bare = await deploy_pool(
        devnet.rpc_url, devnet.passphrase, liquidity=100 * UNIT, vendor_registry=False
    )
    borrower = await new_borrower(bare)
    terms = loan_terms(borrower.public_key, total=10 * UNIT, guarantee=2 * UNIT)
    refused = await _refusal(chain_client, bare.creditline_id, terms)
    assert (refused.reason, refused.detail) == (
        FailureReason.INVALID_VENDOR,
        "Error(Contract, #16)",
    )
    # a "registry" that is not one (the token contract has no is_active): the call fails
    ids = await devnet_call(devnet.rpc_url, "devnet_deployPool", {"admin": borrower.public_key})
    broken = await deploy_pool(
        devnet.rpc_url, devnet.passphrase, liquidity=100 * UNIT, vendor_registry=ids["tokenId"]
    )
    other = await new_borrower(broken)
    refused = await _refusal(
        chain_client,
        broken.creditline_id,
        loan_terms(other.public_key, total=10 * UNIT, guarantee=2 * UNIT),
    )
    assert (refused.reason, refused.detail) == (
        FailureReason.VENDOR_VALIDATION_FAILED,
        "Error(Contract, #17)",
    )


async def test_reputation_below_50_is_refused_4(
    chain_client, deploy_pool, new_borrower, devnet
) -> None:
    pool = await deploy_pool(liquidity=100 * UNIT)
    borrower = await new_borrower(pool)
    terms = loan_terms(borrower.public_key, total=10 * UNIT, guarantee=2 * UNIT)
    await set_reputation(devnet.rpc_url, borrower.public_key, 49)
    refused = await _refusal(chain_client, pool.creditline_id, terms)
    assert (refused.reason, refused.detail) == (
        FailureReason.INSUFFICIENT_REPUTATION,
        "Error(Contract, #4)",
    )
    await set_reputation(devnet.rpc_url, borrower.public_key, 50)  # the threshold passes
    assert await chain_client.build_funding_tx(pool.creditline_id, terms, max_time=expiry())


async def test_exposure_cap_counts_active_debt_18(
    chain_client, deploy_pool, new_borrower, devnet
) -> None:
    """Score 55: credit limit 1 000 units; a loan's debt is total + 10 % interest + 1 % fee."""
    pool = await deploy_pool(liquidity=5_000 * UNIT)
    borrower = await new_borrower(pool)
    await set_reputation(devnet.rpc_url, borrower.public_key, 55)
    too_big = loan_terms(borrower.public_key, total=901 * UNIT, guarantee=200 * UNIT)
    refused = await _refusal(chain_client, pool.creditline_id, too_big)  # 1000.11 > 1000
    assert (refused.reason, refused.detail) == (
        FailureReason.EXPOSURE_LIMIT_EXCEEDED,
        "Error(Contract, #18)",
    )
    # 500 units (debt 555) fit alone; after it landed, the same again (555 + 555) does not
    half = loan_terms(borrower.public_key, total=500 * UNIT, guarantee=100 * UNIT)
    landed = await create_loan_direct(
        devnet.rpc_url, devnet.passphrase, pool.creditline_id, half, borrower.secret
    )
    assert landed.status == "success"
    refused = await _refusal(chain_client, pool.creditline_id, half)
    assert refused.reason == FailureReason.EXPOSURE_LIMIT_EXCEEDED
    # a higher score moves the borrower to a higher tier (75: 5 000 units)
    await set_reputation(devnet.rpc_url, borrower.public_key, 75)
    assert await chain_client.build_funding_tx(pool.creditline_id, half, max_time=expiry())


async def test_liquidity_is_checked_after_vendor_and_reputation(
    chain_client, deploy_pool, new_borrower, devnet
) -> None:
    pool = await deploy_pool(liquidity=10 * UNIT)
    borrower = await new_borrower(pool)
    vendor = Keypair.random().public_key
    await set_vendor(devnet.rpc_url, vendor, active=False)
    short = loan_terms(borrower.public_key, total=100 * UNIT, guarantee=20 * UNIT, vendor=vendor)
    assert (await _refusal(chain_client, pool.creditline_id, short)).reason == (
        FailureReason.VENDOR_NOT_ACTIVE
    )
    await set_vendor(devnet.rpc_url, vendor, active=True)
    assert (await _refusal(chain_client, pool.creditline_id, short)).reason == (
        FailureReason.INSUFFICIENT_LIQUIDITY
    )


async def test_stepfi_defaults_unregistered_vendor_and_unscored_borrower() -> None:
    """A devnet with StepFi's answers for accounts nobody registered (inactive, score 0), the
    one `make run` starts; also its history retention is today's Soroban RPC default."""
    with running_devnet(default_reputation=0, vendors_active_by_default=False) as strict:
        async with client_of(strict) as client:
            health = await devnet_call(strict.rpc_url, "getHealth", {})
            assert health["ledgerRetentionWindow"] == 120_960
            pool = await deploy_pool(strict.rpc_url, strict.passphrase, liquidity=100 * UNIT)
            borrower = await new_funded_keypair(
                strict.rpc_url, token_id=pool.token_id, token_amount=100 * UNIT
            )
            vendor = Keypair.random().public_key
            terms = loan_terms(
                borrower.public_key, total=10 * UNIT, guarantee=2 * UNIT, vendor=vendor
            )
            assert (await _refusal(client, pool.creditline_id, terms)).reason == (
                FailureReason.VENDOR_NOT_ACTIVE
            )
            await set_vendor(strict.rpc_url, vendor)
            assert (await _refusal(client, pool.creditline_id, terms)).reason == (
                FailureReason.INSUFFICIENT_REPUTATION
            )
            await set_reputation(strict.rpc_url, borrower.public_key, 100)
            assert await client.build_funding_tx(pool.creditline_id, terms, max_time=expiry())
            # 20 % is StepFi's default minimum guarantee: 19.99 % is refused
            thin = loan_terms(
                borrower.public_key, total=10 * UNIT, guarantee=2 * UNIT - 1, vendor=vendor
            )
            assert (await _refusal(client, pool.creditline_id, thin)).reason == (
                FailureReason.INSUFFICIENT_GUARANTEE
            )


async def test_admin_calls_refuse_bad_params(devnet) -> None:
    from devnet.kit import DevnetError

    with pytest.raises(DevnetError, match="score must be between"):
        await set_reputation(devnet.rpc_url, Keypair.random().public_key, 101)
    with pytest.raises(DevnetError, match="invalid vendor"):
        await set_vendor(devnet.rpc_url, "not-an-address")
    with pytest.raises(DevnetError, match="devnet_setVendor"):
        await devnet_call(devnet.rpc_url, "devnet_setVendor", {"vendor": "G", "active": "yes"})
