"""Sponsored funding: the borrower signs only a SorobanAuthorizationEntry (address credentials)
for the `create_loan` invocation; a platform channel account is the transaction's source, fee
payer and signer. So the borrower needs no XLM and no sequence number, and may hold several
open loans at once.

Three steps, split where the service's flow splits them (the RPC ones are ChainClient's
`offer_sponsored_entry` and `assemble_sponsored`, the rest is pure and lives here):
- the offer (at open): simulate the invocation with a channel account as source (recording
  mode records the borrower's address-credential entry) and hand back that entry unsigned, with
  our own random nonce and an expiration ledger that cannot outlive the reservation;
- `check_signed_entry` (at submit, pure): the returned entry is the offered one, byte for byte
  apart from the signature, and that signature is the borrower's over the
  ENVELOPE_TYPE_SOROBAN_AUTHORIZATION preimage (stellar-sdk's `build_authorization_preimage`);
- the assembly (at submit): the channel's transaction carrying the signed entry, prepared by
  stellar-sdk's `prepare_transaction` (which keeps the given auth and simulates in enforcing
  mode, so a chain-side refusal shows before anything is sent), `max_time` = the reservation's
  expires_at, signed with the channel key.
"""

from __future__ import annotations

import base64
import hashlib

from pydantic import BaseModel
from stellar_sdk import Keypair
from stellar_sdk import xdr as sx
from stellar_sdk.address import Address
from stellar_sdk.auth import build_authorization_preimage
from stellar_sdk.exceptions import BadSignatureError

# Ledgers of margin below the last ledger that closes before expires_at. The SDK documents the
# entry as valid *through* valid_until (invalid from valid_until + 1, which is what the host
# checks); some docs read "expires at" as exclusive. One ledger less makes either reading safe.
LEDGER_MARGIN = 1


class SponsoredOffer(BaseModel):
    """What the borrower's wallet signs: the unsigned entry and the ledger it is valid through."""

    auth_entry: str  # base64 SorobanAuthorizationEntry, address credentials, signature void
    valid_until_ledger: int
    expires_at: int  # Unix seconds: the reservation's end, the envelope's max_time
    latest_ledger: int  # the ledger the simulation saw


class EntryMismatch(ValueError):
    """The returned entry is not the offered one signed by the borrower; `reason` says how."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def valid_until_ledger(
    *, latest_ledger: int, latest_close_time: int, expires_at: int, ledger_seconds: float
) -> int:
    """The last ledger the entry may be used in: the ledgers closing by `expires_at` at the
    nominal rate, less the margin. Ledgers that close slower than nominal land earlier in
    ledger numbers, never later in time than the envelope's `max_time` allows for our own
    transaction; the reservation's settlement grace covers a slow network for the entry."""
    ledgers = int((expires_at - latest_close_time) // max(ledger_seconds, 0.001))
    return latest_ledger + ledgers - LEDGER_MARGIN


def decode_entry(b64: str) -> sx.SorobanAuthorizationEntry:
    try:
        raw = base64.b64decode(b64, validate=True)
        return sx.SorobanAuthorizationEntry.from_xdr_bytes(raw)
    except Exception as exc:  # binascii.Error, and the XDR decoder's assorted errors on garbage
        raise EntryMismatch("malformed", "not a base64 SorobanAuthorizationEntry") from exc


def borrower_entry(recorded: list[str], borrower: str) -> sx.SorobanAuthorizationEntry | None:
    """The one address-credential entry simulation recorded for `borrower`, if exactly one."""
    mine = []
    for b64 in recorded:
        entry = sx.SorobanAuthorizationEntry.from_xdr(b64)
        try:
            creds = _address_credentials(entry)
        except EntryMismatch:
            continue  # source-account credentials (another party's call)
        if Address.from_xdr_sc_address(creds.address).address == borrower:
            mine.append(entry)
    return mine[0] if len(mine) == 1 else None


def _address_credentials(entry: sx.SorobanAuthorizationEntry) -> sx.SorobanAddressCredentials:
    """The entry's address credentials: legacy ADDRESS, or CAP-71's ADDRESS_V2 (what a network
    records when asked for upgraded auth; its preimage binds the address too)."""
    creds = entry.credentials
    found = None
    if creds.type == sx.SorobanCredentialsType.SOROBAN_CREDENTIALS_ADDRESS:
        found = creds.address
    elif creds.type == sx.SorobanCredentialsType.SOROBAN_CREDENTIALS_ADDRESS_V2:
        found = creds.address_v2
    if found is None:
        raise EntryMismatch("not_address_credentials", "the entry has no address credentials")
    return found


def with_offer_fields(
    recorded: sx.SorobanAuthorizationEntry, *, nonce: int, valid_until: int
) -> sx.SorobanAuthorizationEntry:
    """The recorded entry with our nonce and expiration and no signature (what is offered)."""
    out = sx.SorobanAuthorizationEntry.from_xdr_bytes(recorded.to_xdr_bytes())
    addr = _address_credentials(out)
    addr.nonce = sx.Int64(nonce)
    addr.signature_expiration_ledger = sx.Uint32(valid_until)
    addr.signature = sx.SCVal(sx.SCValType.SCV_VOID)
    return out


def check_signed_entry(
    offered_b64: str, signed_b64: str, borrower: str, network_passphrase: str
) -> sx.SorobanAuthorizationEntry:
    """The signed entry, if it is the offered one (address, nonce, expiration, invocation
    unchanged) signed by `borrower`'s key over the authorization preimage; else EntryMismatch
    with reason `malformed`, `not_address_credentials`, `tampered`, `unsigned` or
    `not_signed_by_borrower`."""
    offered, signed = decode_entry(offered_b64), decode_entry(signed_b64)
    want, got = _address_credentials(offered), _address_credentials(signed)
    same = (
        signed.credentials.type == offered.credentials.type
        and got.address.to_xdr_bytes() == want.address.to_xdr_bytes()
        and got.nonce.int64 == want.nonce.int64
        and got.signature_expiration_ledger.uint32 == want.signature_expiration_ledger.uint32
        and signed.root_invocation.to_xdr_bytes() == offered.root_invocation.to_xdr_bytes()
    )
    if not same:
        raise EntryMismatch("tampered", "the signed entry is not the entry this loan offered")
    if Address.from_xdr_sc_address(got.address).address != borrower:
        raise EntryMismatch("tampered", "the entry does not authorize the borrower's account")
    preimage = build_authorization_preimage(
        signed, got.signature_expiration_ledger.uint32, network_passphrase
    )
    payload = hashlib.sha256(preimage.to_xdr_bytes()).digest()
    pairs = _signature_pairs(got.signature)
    if not pairs:
        raise EntryMismatch("unsigned", "the entry carries no signature")
    key = Keypair.from_public_key(borrower)
    for public_key, signature in pairs:
        if public_key != key.raw_public_key():
            raise EntryMismatch("not_signed_by_borrower", "the entry is signed by another key")
        try:
            key.verify(payload, signature)
        except BadSignatureError as exc:
            raise EntryMismatch(
                "not_signed_by_borrower", "the signature does not verify with the borrower's key"
            ) from exc
    return signed


def _signature_pairs(signature: sx.SCVal) -> list[tuple[bytes, bytes]]:
    """(public_key, signature) of a classic account's `Vec<{public_key, signature}>`."""
    if signature.type != sx.SCValType.SCV_VEC or signature.vec is None:
        return []
    out = []
    for item in signature.vec.sc_vec:
        if item.type != sx.SCValType.SCV_MAP or item.map is None:
            raise EntryMismatch("not_signed_by_borrower", "the signature is not an account's")
        fields: dict[str, bytes] = {}
        for e in item.map.sc_map:
            if e.key.sym is not None and e.val.bytes is not None:
                fields[e.key.sym.sc_symbol.decode()] = e.val.bytes.sc_bytes
        if "public_key" not in fields or "signature" not in fields:
            raise EntryMismatch("not_signed_by_borrower", "the signature is not an account's")
        out.append((fields["public_key"], fields["signature"]))
    return out


def entry_call(entry: sx.SorobanAuthorizationEntry) -> tuple[str, str, list[sx.SCVal]]:
    fn = entry.root_invocation.function.contract_fn
    if fn is None:
        raise EntryMismatch("tampered", "the entry authorizes no contract call")
    return (
        Address.from_xdr_sc_address(fn.contract_address).address,
        fn.function_name.sc_symbol.decode(),
        list(fn.args),
    )
