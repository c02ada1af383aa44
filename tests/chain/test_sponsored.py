"""The chain side of sponsored funding against the devnet: the offered entry is the borrower's
address-credential entry, unsigned, expiring a ledger before the reservation; the check tells
the offered entry signed by the borrower from anything else; the channel's envelope lands."""

from __future__ import annotations

import copy
import time

import pytest
from stellar_sdk import Keypair, TransactionEnvelope
from stellar_sdk import xdr as sx
from stellar_sdk.auth import authorize_entry

from chain import sponsored
from chain.errors import ChainRefusal
from chain.types import FailureReason
from core.money import UNIT
from devnet.kit import fund_account, wait_for_tx
from tests.chain.helpers import loan_terms
from tests.fixtures.devnet import BORROWER_TOKENS, LEDGER_INTERVAL


def test_valid_until_leaves_a_ledger_of_margin() -> None:
    # 60 s at 5 s a ledger: ledgers 101..112 close by expires_at; the entry is valid through
    # 111, one short of the last, whichever way "expires at" is read.
    until = sponsored.valid_until_ledger(
        latest_ledger=100, latest_close_time=1_000, expires_at=1_060, ledger_seconds=5
    )
    assert until == 111
    assert (
        sponsored.valid_until_ledger(
            latest_ledger=100, latest_close_time=1_000, expires_at=1_004, ledger_seconds=5
        )
        == 99
    )


async def _setup(devnet, deploy_pool):
    pool = await deploy_pool(liquidity=100 * UNIT)
    borrower, channel = Keypair.random(), Keypair.random()
    await fund_account(
        devnet.rpc_url,
        borrower.public_key,
        xlm=0,  # the borrower holds no XLM at all
        token_id=pool.token_id,
        token_amount=BORROWER_TOKENS,
    )
    await fund_account(devnet.rpc_url, channel.public_key)
    return pool, borrower, channel


async def test_offer_sign_check_assemble_lands(devnet, deploy_pool, chain_client) -> None:
    pool, borrower, channel = await _setup(devnet, deploy_pool)
    terms = loan_terms(borrower.public_key, total=10 * UNIT, guarantee=2 * UNIT)
    expires_at = int(time.time()) + 30
    offer = await chain_client.offer_sponsored_entry(
        pool.creditline_id,
        terms,
        sponsor=channel.public_key,
        expires_at=expires_at,
        ledger_seconds=LEDGER_INTERVAL,
    )
    entry = sx.SorobanAuthorizationEntry.from_xdr(offer.auth_entry)
    creds = entry.credentials.address
    assert creds is not None and creds.signature.type == sx.SCValType.SCV_VOID
    assert creds.signature_expiration_ledger.uint32 == offer.valid_until_ledger
    assert offer.latest_ledger < offer.valid_until_ledger
    assert offer.valid_until_ledger <= offer.latest_ledger + 30 / LEDGER_INTERVAL - 1
    # the wallet signs with stellar-sdk's helper
    signed_b64 = authorize_entry(
        offer.auth_entry, borrower, offer.valid_until_ledger, devnet.passphrase
    ).to_xdr()
    signed = sponsored.check_signed_entry(
        offer.auth_entry, signed_b64, borrower.public_key, devnet.passphrase
    )
    seq = await chain_client.account_sequence(channel.public_key)
    xdr, tx_hash = await chain_client.assemble_sponsored(
        channel=channel, sequence=seq + 1, signed_entry=signed, max_time=expires_at
    )
    env = TransactionEnvelope.from_xdr(xdr, devnet.passphrase)
    assert env.transaction.source.account_id == channel.public_key
    assert env.transaction.preconditions is not None
    assert env.transaction.preconditions.time_bounds.max_time == expires_at  # type: ignore[union-attr]
    sent = await chain_client.submit(xdr)
    assert (sent.status, sent.tx_hash) == ("pending", tx_hash)
    status = await wait_for_tx(chain_client, tx_hash)
    assert status.status == "success" and status.chain_loan_id is not None


async def test_check_refuses_what_is_not_the_offer_signed_by_the_borrower(
    devnet, deploy_pool, chain_client
) -> None:
    pool, borrower, channel = await _setup(devnet, deploy_pool)
    terms = loan_terms(borrower.public_key, total=10 * UNIT, guarantee=2 * UNIT)
    offer = await chain_client.offer_sponsored_entry(
        pool.creditline_id,
        terms,
        sponsor=channel.public_key,
        expires_at=int(time.time()) + 30,
        ledger_seconds=LEDGER_INTERVAL,
    )
    until, passphrase = offer.valid_until_ledger, devnet.passphrase

    def reason(signed_b64: str) -> str:
        with pytest.raises(sponsored.EntryMismatch) as caught:
            sponsored.check_signed_entry(
                offer.auth_entry, signed_b64, borrower.public_key, passphrase
            )
        return caught.value.reason

    good = authorize_entry(offer.auth_entry, borrower, until, passphrase)
    assert reason("garbage!") == "malformed"
    assert reason(offer.auth_entry) == "unsigned"
    assert (
        reason(authorize_entry(offer.auth_entry, Keypair.random(), until, passphrase).to_xdr())
        == "not_signed_by_borrower"
    )
    # a later expiration, signed by the borrower, is still not the offer
    assert reason(
        authorize_entry(offer.auth_entry, borrower, until + 100, passphrase).to_xdr()
    ) == ("tampered")
    # the amount changed after signing: the invocation differs
    edited = copy.deepcopy(good)
    fn = edited.root_invocation.function.contract_fn
    assert fn is not None
    fn.args[2] = sx.SCVal.from_xdr(fn.args[3].to_xdr())
    assert reason(edited.to_xdr()) == "tampered"
    # the borrower's signature over a nonce changed after signing no longer verifies
    bad_sig = copy.deepcopy(good)
    assert bad_sig.credentials.address is not None
    sig = bad_sig.credentials.address.signature
    assert sig.vec is not None and sig.vec.sc_vec[0].map is not None
    for e in sig.vec.sc_vec[0].map.sc_map:
        if e.val.bytes is not None and len(e.val.bytes.sc_bytes) == 64:
            e.val.bytes.sc_bytes = bytes(64)
    assert reason(bad_sig.to_xdr()) == "not_signed_by_borrower"


async def test_offer_is_refused_when_the_chain_would_refuse(
    devnet, deploy_pool, chain_client
) -> None:
    pool, borrower, channel = await _setup(devnet, deploy_pool)
    terms = loan_terms(borrower.public_key, total=1000 * UNIT, guarantee=200 * UNIT)
    with pytest.raises(ChainRefusal) as caught:
        await chain_client.offer_sponsored_entry(
            pool.creditline_id,
            terms,
            sponsor=channel.public_key,
            expires_at=int(time.time()) + 30,
            ledger_seconds=LEDGER_INTERVAL,
        )
    assert caught.value.reason == FailureReason.INSUFFICIENT_LIQUIDITY


async def test_assembly_refuses_an_expired_entry_before_sending(
    devnet, deploy_pool, chain_client
) -> None:
    pool, borrower, channel = await _setup(devnet, deploy_pool)
    terms = loan_terms(borrower.public_key, total=10 * UNIT, guarantee=2 * UNIT)
    offer = await chain_client.offer_sponsored_entry(
        pool.creditline_id,
        terms,
        sponsor=channel.public_key,
        expires_at=int(time.time()) + 30,
        ledger_seconds=LEDGER_INTERVAL,
    )
    latest = await chain_client.latest_ledger()
    stale = authorize_entry(offer.auth_entry, borrower, latest, devnet.passphrase)
    seq = await chain_client.account_sequence(channel.public_key)
    with pytest.raises(ChainRefusal) as caught:
        await chain_client.assemble_sponsored(
            channel=channel, sequence=seq + 1, signed_entry=stale, max_time=int(time.time()) + 30
        )
    assert (caught.value.reason, caught.value.detail) == (
        FailureReason.BAD_AUTH,
        "Error(Auth, InvalidInput)",
    )


async def test_cap71_address_v2_entries_are_checked_and_land(devnet, deploy_pool, chain_client):
    """A network asked for upgraded auth records ADDRESS_V2 credentials (the preimage binds the
    address): the same check and assembly serve them, and the devnet authenticates them."""
    pool, borrower, channel = await _setup(devnet, deploy_pool)
    terms = loan_terms(borrower.public_key, total=10 * UNIT, guarantee=2 * UNIT)
    expires_at = int(time.time()) + 30
    offer = await chain_client.offer_sponsored_entry(
        pool.creditline_id,
        terms,
        sponsor=channel.public_key,
        expires_at=expires_at,
        ledger_seconds=LEDGER_INTERVAL,
    )
    legacy = sx.SorobanAuthorizationEntry.from_xdr(offer.auth_entry)
    v2 = sx.SorobanAuthorizationEntry(
        sx.SorobanCredentials(
            sx.SorobanCredentialsType.SOROBAN_CREDENTIALS_ADDRESS_V2,
            address_v2=legacy.credentials.address,
        ),
        legacy.root_invocation,
    )
    offered_v2 = v2.to_xdr()
    signed_v2 = authorize_entry(
        offered_v2, borrower, offer.valid_until_ledger, devnet.passphrase
    ).to_xdr()
    # a V2 signature is not a signature of the legacy offer, nor the other way round
    with pytest.raises(sponsored.EntryMismatch):
        sponsored.check_signed_entry(
            offer.auth_entry, signed_v2, borrower.public_key, devnet.passphrase
        )
    signed = sponsored.check_signed_entry(
        offered_v2, signed_v2, borrower.public_key, devnet.passphrase
    )
    seq = await chain_client.account_sequence(channel.public_key)
    xdr, tx_hash = await chain_client.assemble_sponsored(
        channel=channel, sequence=seq + 1, signed_entry=signed, max_time=expires_at
    )
    assert (await chain_client.submit(xdr)).status == "pending"
    assert (await wait_for_tx(chain_client, tx_hash)).status == "success"
