"""Envelope helpers: the API relies on them to refuse a relayed XDR that is not the one it built."""

from __future__ import annotations

import base64

import pytest
from stellar_sdk import Account, Keypair, TransactionBuilder, scval

from chain.envelope import decode_envelope, envelope_hash, sign_envelope, unsigned_envelope_hash

PASSPHRASE = "Local Devnet ; liquidity-saga"
CONTRACT = "CA3D5KRYM6CB7OWQ6TWYRR3Z4T7GNZLKERYNZGGA5SOAOPIFY6YQGAXE"


def _unsigned(source: Keypair) -> str:
    return (
        TransactionBuilder(Account(source.public_key, 41), PASSPHRASE, 100)
        .append_invoke_contract_function_op(CONTRACT, "deposit", [scval.to_int128(5)])
        .add_time_bounds(0, 2_000_000_000)
        .build()
        .to_xdr()
    )


def test_hash_is_fixed_before_signing_and_network_specific() -> None:
    kp = Keypair.random()
    xdr = _unsigned(kp)
    signed = sign_envelope(xdr, kp.secret, PASSPHRASE)
    assert signed != xdr
    assert envelope_hash(signed, PASSPHRASE) == envelope_hash(xdr, PASSPHRASE)
    assert envelope_hash(xdr, "Test SDF Network ; September 2015") != envelope_hash(xdr, PASSPHRASE)
    assert len(envelope_hash(xdr, PASSPHRASE)) == 64


def _signed_by(xdr: str, public_key: str) -> bool:
    return decode_envelope(xdr).signed_by(public_key, PASSPHRASE)


def test_signed_by_checks_the_key_and_the_network() -> None:
    borrower, stranger = Keypair.random(), Keypair.random()
    xdr = _unsigned(borrower)
    assert not _signed_by(xdr, borrower.public_key)
    signed = sign_envelope(xdr, borrower.secret, PASSPHRASE)
    assert _signed_by(signed, borrower.public_key)
    assert not _signed_by(signed, stranger.public_key)
    # a signature made for another network does not verify here
    other = sign_envelope(xdr, borrower.secret, "Test SDF Network ; September 2015")
    assert not _signed_by(other, borrower.public_key)


def test_garbage_is_refused() -> None:
    with pytest.raises(ValueError):
        envelope_hash("not-xdr", PASSPHRASE)
    with pytest.raises(ValueError):
        decode_envelope("not-xdr")


def test_hash_from_unsigned_envelope_bytes_matches_the_network_hash() -> None:
    """The builder hashes the bytes it just encoded; that must be the hash the network and the
    watcher use, or settlements could never be matched to their loan."""
    xdr = _unsigned(Keypair.random())
    raw = base64.b64decode(xdr)
    assert unsigned_envelope_hash(raw, PASSPHRASE) == envelope_hash(xdr, PASSPHRASE)
    other = "Test SDF Network ; September 2015"
    assert unsigned_envelope_hash(raw, other) != envelope_hash(xdr, PASSPHRASE)
    signed = base64.b64decode(sign_envelope(xdr, Keypair.random().secret, PASSPHRASE))
    with pytest.raises(ValueError):
        unsigned_envelope_hash(signed, PASSPHRASE)  # a signed envelope is not hashed this way


def test_signing_against_the_handed_out_hash_is_the_wallet_signature() -> None:
    """The fast path (no decode) must produce the very envelope the decoding path produces, and a
    wallet told the hash must refuse any other transaction."""
    borrower = Keypair.random()
    xdr = _unsigned(borrower)
    tx_hash = envelope_hash(xdr, PASSPHRASE)
    signed = sign_envelope(xdr, borrower.secret, PASSPHRASE, expected_hash=tx_hash)
    assert signed == sign_envelope(xdr, borrower.secret, PASSPHRASE)
    assert _signed_by(signed, borrower.public_key)

    cosigner = Keypair.random()  # an already signed envelope goes through the decoding path
    both = sign_envelope(signed, cosigner.secret, PASSPHRASE, expected_hash=tx_hash)
    assert both == sign_envelope(signed, cosigner.secret, PASSPHRASE)
    assert _signed_by(both, borrower.public_key) and _signed_by(both, cosigner.public_key)

    other = _unsigned(Keypair.random())
    for envelope in (other, sign_envelope(other, borrower.secret, PASSPHRASE)):
        with pytest.raises(ValueError, match="not " + tx_hash):
            sign_envelope(envelope, borrower.secret, PASSPHRASE, expected_hash=tx_hash)
    with pytest.raises(ValueError):
        sign_envelope(
            xdr, borrower.secret, "Test SDF Network ; September 2015", expected_hash=tx_hash
        )  # the same bytes are another transaction there
