"""Pure envelope helpers (no I/O).

The funding hash is fixed before the borrower signs, so the API can refuse a relayed envelope
whose hash differs from the one it handed out, and check the borrower's signature locally before
spending an RPC round trip.

Everything here works on the raw XDR types and the envelope's own bytes instead of the SDK's
high-level `TransactionEnvelope`: that class converts every address to a strkey and round-trips
the Soroban footprint through its builder on each decode, which made decoding a funding envelope
about three times dearer than the XDR itself. Only v1 envelopes (ENVELOPE_TYPE_TX) are handled:
that is what the saga builds and what a borrower signs; a fee-bump or v0 envelope is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from functools import lru_cache

from stellar_sdk import Keypair, Network
from stellar_sdk import xdr as sx
from stellar_sdk.exceptions import BadSignatureError

# XDR of an unsigned v1 envelope: EnvelopeType ENVELOPE_TYPE_TX (2), the Transaction, and an empty
# signature array. The network signs ENVELOPE_TYPE_TX followed by the same Transaction bytes.
ENVELOPE_TYPE_TX = sx.EnvelopeType.ENVELOPE_TYPE_TX.value.to_bytes(4, "big")
_NO_SIGNATURES = (0).to_bytes(4, "big")


@lru_cache(maxsize=16)
def _network_id(network_passphrase: str) -> bytes:
    return Network(network_passphrase).network_id()


def _transaction_hash(tx_bytes: bytes, network_passphrase: str) -> bytes:
    """What the network signs and names a transaction by: network id, envelope type, the
    Transaction's XDR."""
    return hashlib.sha256(_network_id(network_passphrase) + ENVELOPE_TYPE_TX + tx_bytes).digest()


@dataclass(frozen=True)
class Envelope:
    """A decoded v1 envelope and the exact bytes of its Transaction (what the network hashes)."""

    xdr: sx.TransactionEnvelope
    tx_bytes: bytes

    @property
    def tx(self) -> sx.Transaction:
        assert self.xdr.v1 is not None
        return self.xdr.v1.tx

    @property
    def signatures(self) -> list[sx.DecoratedSignature]:
        assert self.xdr.v1 is not None
        return self.xdr.v1.signatures

    def hash(self, network_passphrase: str) -> bytes:
        return _transaction_hash(self.tx_bytes, network_passphrase)

    def signed_by(self, public_key: str, network_passphrase: str) -> bool:
        """True when one of the signatures is a valid ed25519 signature of `public_key`."""
        keypair = Keypair.from_public_key(public_key)
        hint = keypair.signature_hint()
        tx_hash = self.hash(network_passphrase)
        for decorated in self.signatures:
            if decorated.hint.signature_hint != hint:
                continue
            try:
                keypair.verify(tx_hash, decorated.signature.signature)
                return True
            except BadSignatureError:
                continue
        return False


def _signature_array_size(signatures: list[sx.DecoratedSignature]) -> int:
    """Bytes of the envelope's trailing `DecoratedSignature signatures<20>`: a count, then per
    entry a 4-byte hint and a length-prefixed signature padded to 4 bytes."""
    return 4 + sum(4 + 4 + (len(s.signature.signature) + 3) // 4 * 4 for s in signatures)


def _b64decode(xdr: str) -> bytes:
    try:
        return base64.b64decode(xdr, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"not base64: {exc}") from exc


def decode_envelope(xdr: str) -> Envelope:
    """Decode a base64 v1 envelope; ValueError for anything else."""
    return _decode_raw(_b64decode(xdr))


def _decode_raw(raw: bytes) -> Envelope:
    try:
        envelope = sx.TransactionEnvelope.from_xdr_bytes(raw)
    except Exception as exc:  # the XDR library raises a zoo of types on garbage
        raise ValueError(f"not a transaction envelope: {exc}") from exc
    if envelope.type != sx.EnvelopeType.ENVELOPE_TYPE_TX or envelope.v1 is None:
        raise ValueError("not a v1 transaction envelope (fee-bump and v0 are not accepted)")
    # from_xdr_bytes refuses trailing bytes, so the Transaction is exactly what lies between the
    # envelope type and the signature array.
    end = len(raw) - _signature_array_size(envelope.v1.signatures)
    return Envelope(envelope, raw[4:end])


def envelope_hash(xdr: str, network_passphrase: str) -> str:
    """Network-specific transaction hash (hex); signatures do not change it."""
    return decode_envelope(xdr).hash(network_passphrase).hex()


def unsigned_envelope_hash(envelope: bytes, network_passphrase: str) -> str:
    """Hash (hex) of an unsigned v1 envelope straight from its XDR bytes.

    The signature payload is `network_id || ENVELOPE_TYPE_TX || Transaction`, which is the
    envelope's own bytes without the empty signature array, so the builder that has just encoded
    the envelope gets its hash without encoding the transaction a second time."""
    return _unsigned_tx_hash(envelope, network_passphrase).hex()


def _unsigned_tx_hash(envelope: bytes, network_passphrase: str) -> bytes:
    if envelope[:4] != ENVELOPE_TYPE_TX or envelope[-4:] != _NO_SIGNATURES:
        raise ValueError("not an unsigned v1 transaction envelope")
    return _transaction_hash(envelope[4:-4], network_passphrase)


def sign_envelope(
    xdr: str, secret: str, network_passphrase: str, *, expected_hash: str | None = None
) -> str:
    """Sign as the holder of `secret` would in a wallet; returns the signed envelope XDR.

    With `expected_hash` (the hash the saga handed out with the XDR) the wallet signs only that
    transaction: anything else is a ValueError. An unsigned envelope is then signed without
    decoding it: its bytes hash to that value only when they are exactly ENVELOPE_TYPE_TX, that
    Transaction and an empty signature array (sha256 is collision-resistant), so the check costs
    a hash instead of an XDR decode (about a third of a millisecond for a funding envelope)."""
    keypair = Keypair.from_secret(secret)
    raw = _b64decode(xdr)
    if expected_hash is not None:
        try:
            unsigned_hash: bytes | None = _unsigned_tx_hash(raw, network_passphrase)
        except ValueError:
            unsigned_hash = None  # signed already: decoded below
        if unsigned_hash is not None and unsigned_hash.hex() == expected_hash:
            signed = keypair.sign_decorated(unsigned_hash).to_xdr_object().to_xdr_bytes()
            packed = raw[:-4] + (1).to_bytes(4, "big") + signed
            return base64.b64encode(packed).decode()
    envelope = _decode_raw(raw)
    tx_hash = envelope.hash(network_passphrase)
    if expected_hash is not None and tx_hash.hex() != expected_hash:
        raise ValueError(f"the envelope is transaction {tx_hash.hex()}, not {expected_hash}")
    signatures = [*envelope.signatures, keypair.sign_decorated(tx_hash).to_xdr_object()]
    if len(signatures) > 20:
        raise ValueError("an envelope holds at most 20 signatures")
    packed = b"".join(
        [ENVELOPE_TYPE_TX, envelope.tx_bytes, len(signatures).to_bytes(4, "big")]
        + [s.to_xdr_bytes() for s in signatures]
    )
    return base64.b64encode(packed).decode()
