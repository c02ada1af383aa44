"""Strkey <-> XDR address conversions, memoized.

The devnet keeps addresses as strkeys (G... / C...) and turns them into XDR and back many times
per transaction: every argument check, storage key, ledger key, event topic and auth entry. The
SDK's `Address` does that with base32 and a checksum each way, and its constructor tries several
strkey kinds in turn, which made strkey coding the largest single cost of a loan. A strkey and its
raw key map one-to-one, so the pure conversions are cached on those immutable values; the XDR
objects themselves are built fresh on every call, so no caller can alter what another one sees.

Address kinds the contract models never use (muxed, claimable balance, liquidity pool) go
through the SDK uncached, with its own errors."""

from __future__ import annotations

from functools import lru_cache

from stellar_sdk import Address, Keypair, StrKey
from stellar_sdk import xdr as sx
from stellar_sdk.address import AddressType

_CACHE_SIZE = 1 << 16  # a long benchmark meets a few thousand accounts, each a few hundred bytes

_ACCOUNT = sx.SCAddressType.SC_ADDRESS_TYPE_ACCOUNT
_CONTRACT = sx.SCAddressType.SC_ADDRESS_TYPE_CONTRACT


@lru_cache(maxsize=_CACHE_SIZE)
def _parts(address: str) -> tuple[AddressType, bytes]:
    """What `Address(address)` decodes; raises its ValueError for an invalid strkey."""
    parsed = Address(address)
    return parsed.type, parsed.key


def _key_of(address: str, kind: AddressType) -> bytes | None:
    """The raw key of a valid strkey of this kind, else None (the caller defers to the SDK)."""
    try:
        parsed_kind, key = _parts(address)
    except ValueError:
        return None
    return key if parsed_kind == kind else None


def sc_address(address: str) -> sx.SCAddress:
    """`Address(address).to_xdr_sc_address()`, as a new object."""
    if (key := _key_of(address, AddressType.ACCOUNT)) is not None:
        return sx.SCAddress(_ACCOUNT, account_id=_account_id(key))
    if (key := _key_of(address, AddressType.CONTRACT)) is not None:
        return sx.SCAddress(_CONTRACT, contract_id=sx.ContractID(sx.Hash(key)))
    return Address(address).to_xdr_sc_address()


def contract_id(address: str) -> sx.ContractID:
    """`ContractID(Hash(StrKey.decode_contract(address)))`, as a new object."""
    key = _key_of(address, AddressType.CONTRACT)
    return sx.ContractID(sx.Hash(StrKey.decode_contract(address) if key is None else key))


def account_id(address: str) -> sx.AccountID:
    """`Keypair.from_public_key(address).xdr_account_id()`, as a new object."""
    key = _key_of(address, AddressType.ACCOUNT)
    if key is None:
        return Keypair.from_public_key(address).xdr_account_id()
    return _account_id(key)


def _account_id(ed25519: bytes) -> sx.AccountID:
    return sx.AccountID(sx.PublicKey(sx.PublicKeyType.PUBLIC_KEY_TYPE_ED25519, sx.Uint256(ed25519)))


def to_address(address: str) -> sx.SCVal:
    """`scval.to_address(address)` for a strkey, as a new object."""
    return sx.SCVal(sx.SCValType.SCV_ADDRESS, address=sc_address(address))


@lru_cache(maxsize=_CACHE_SIZE)
def account_strkey(ed25519: bytes) -> str:
    """G... strkey of a raw ed25519 public key."""
    return Address.from_raw_account(ed25519).address


@lru_cache(maxsize=_CACHE_SIZE)
def contract_strkey(contract_hash: bytes) -> str:
    """C... strkey of a raw contract id."""
    return Address.from_raw_contract(contract_hash).address


def strkey(address: sx.SCAddress) -> str:
    """`Address.from_xdr_sc_address(address).address`."""
    if address.type == _ACCOUNT and address.account_id is not None:
        ed25519 = address.account_id.account_id.ed25519
        if ed25519 is not None:
            return account_strkey(ed25519.uint256)
    if address.type == _CONTRACT and address.contract_id is not None:
        return contract_strkey(address.contract_id.contract_id.hash)
    return Address.from_xdr_sc_address(address).address


def muxed_account_id(account: sx.MuxedAccount) -> str:
    """G... strkey of a transaction source, muxed or not (`MuxedAccount.account_id`)."""
    if account.type == sx.CryptoKeyType.KEY_TYPE_ED25519:
        assert account.ed25519 is not None
        return account_strkey(account.ed25519.uint256)
    assert account.med25519 is not None
    return account_strkey(account.med25519.ed25519.uint256)
