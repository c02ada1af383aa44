"""Pure envelope helpers (no I/O).

The funding hash is fixed before the borrower signs, so the API can refuse a relayed envelope
whose hash differs from the one it handed out, and check the borrower's signature locally before
spending an RPC round trip."""

from __future__ import annotations

import hashlib

from stellar_sdk import Keypair, TransactionEnvelope
from stellar_sdk.exceptions import BadSignatureError

# XDR of an unsigned v1 envelope: EnvelopeType ENVELOPE_TYPE_TX (2), the Transaction, and an empty
# signature array. The network signs ENVELOPE_TYPE_TX followed by the same Transaction bytes.
_ENVELOPE_TYPE_TX = (2).to_bytes(4, "big")
_NO_SIGNATURES = (0).to_bytes(4, "big")


def _decode(xdr: str, network_passphrase: str) -> TransactionEnvelope:
    try:
        return TransactionEnvelope.from_xdr(xdr, network_passphrase)
    except Exception as exc:  # the XDR library raises a zoo of types on garbage
        raise ValueError(f"not a transaction envelope: {exc}") from exc


def envelope_hash(xdr: str, network_passphrase: str) -> str:
    """Network-specific transaction hash (hex); signatures do not change it."""
    return _decode(xdr, network_passphrase).hash_hex()


def unsigned_envelope_hash(envelope: bytes, network_id: bytes) -> str:
    """Hash (hex) of an unsigned v1 envelope straight from its XDR bytes.

    The signature payload is `network_id || ENVELOPE_TYPE_TX || Transaction`, which is the
    envelope's own bytes without the empty signature array, so the builder that has just encoded
    the envelope gets its hash without encoding the transaction a second time."""
    if envelope[:4] != _ENVELOPE_TYPE_TX or envelope[-4:] != _NO_SIGNATURES:
        raise ValueError("not an unsigned v1 transaction envelope")
    return hashlib.sha256(network_id + envelope[:-4]).hexdigest()


def is_signed_by(xdr: str, public_key: str, network_passphrase: str) -> bool:
    """True when one of the envelope's signatures is a valid ed25519 signature of `public_key`."""
    try:
        envelope = _decode(xdr, network_passphrase)
        keypair = Keypair.from_public_key(public_key)
    except ValueError:
        return False
    tx_hash = envelope.hash()
    hint = keypair.signature_hint()
    for decorated in envelope.signatures:
        if decorated.signature_hint != hint:
            continue
        try:
            keypair.verify(tx_hash, decorated.signature)
            return True
        except BadSignatureError:
            continue
    return False


def sign_envelope(xdr: str, secret: str, network_passphrase: str) -> str:
    """Sign as the holder of `secret` would in a wallet; returns the signed envelope XDR."""
    envelope = _decode(xdr, network_passphrase)
    envelope.sign(Keypair.from_secret(secret))
    return envelope.to_xdr()
