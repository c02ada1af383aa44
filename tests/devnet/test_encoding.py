"""The devnet's shortcuts around the SDK (memoized strkeys, ledger keys and footprints encoded
from cached bytes, raw envelope decoding) give exactly what the SDK's own path gives."""

from __future__ import annotations

from typing import Any

import pytest
from stellar_sdk import (
    Account,
    Address,
    Asset,
    Keypair,
    MuxedAccount,
    StrKey,
    TransactionBuilder,
    TransactionEnvelope,
    scval,
)
from stellar_sdk import xdr as sx

from devnet import addresses, xdrgen
from devnet.contracts import to_struct
from devnet.host import ContractEventRecord, HostError
from devnet.ledger import Chain, RpcError

PASSPHRASE = "Test ; devnet encoding"
CONTRACT = StrKey.encode_contract(bytes(range(32)))


def test_address_conversions_match_the_sdk() -> None:
    account = Keypair.from_raw_ed25519_seed(bytes(32)).public_key
    for strkey in (account, CONTRACT):
        assert addresses.sc_address(strkey).to_xdr() == Address(strkey).to_xdr_sc_address().to_xdr()
        assert addresses.to_address(strkey).to_xdr() == scval.to_address(strkey).to_xdr()
        assert addresses.strkey(Address(strkey).to_xdr_sc_address()) == strkey
    assert addresses.sc_address(account) is not addresses.sc_address(account)  # never shared
    assert addresses.contract_id(CONTRACT).to_xdr() == (
        sx.ContractID(sx.Hash(StrKey.decode_contract(CONTRACT))).to_xdr()
    )
    assert addresses.account_id(account).to_xdr() == (
        Keypair.from_public_key(account).xdr_account_id().to_xdr()
    )
    muxed = MuxedAccount(account, 7).to_xdr_object()
    assert addresses.muxed_account_id(muxed) == account


def test_invalid_strkeys_raise_what_the_sdk_raises() -> None:
    with pytest.raises(ValueError, match="Unsupported address type"):
        addresses.sc_address("Gnope")
    with pytest.raises(ValueError):
        addresses.contract_id(Keypair.random().public_key)


def test_soroban_data_from_cached_keys_matches_the_sdk_encoding() -> None:
    account = Keypair.from_raw_ed25519_seed(bytes(32)).public_key
    read_only = [xdrgen.instance_ledger_key(CONTRACT)]
    read_write = [
        xdrgen.slot_ledger_key(CONTRACT, ("Balance", account)),
        xdrgen.slot_ledger_key(CONTRACT, ("Loan", 3)),
    ]
    expected = xdrgen.footprint_data(read_only, read_write, 4_500_000, 600, 400, 123_456)
    got = xdrgen.soroban_data_xdr(
        [xdrgen.instance_ledger_key_xdr(CONTRACT)],
        [
            xdrgen.slot_ledger_key_xdr(CONTRACT, ("Balance", account)),
            xdrgen.slot_ledger_key_xdr(CONTRACT, ("Loan", 3)),
        ],
        4_500_000,
        600,
        400,
        123_456,
    )
    assert got == expected.to_xdr_bytes()
    assert xdrgen.resource_fee(3, 4_500_000, 600, 400) == xdrgen.min_resource_fee(
        expected.resources
    )


def _sdk_event(record: ContractEventRecord) -> sx.ContractEvent:
    return sx.ContractEvent(
        ext=sx.ExtensionPoint(0),
        contract_id=sx.ContractID(sx.Hash(StrKey.decode_contract(record.contract_id))),
        type=sx.ContractEventType.CONTRACT,
        body=sx.ContractEventBody(0, v0=sx.ContractEventV0(record.topics, record.data)),
    )


def _sdk_meta(
    events: list[ContractEventRecord],
    return_value: sx.SCVal | None,
    diagnostics: list[sx.DiagnosticEvent],
) -> bytes:
    """The TransactionMeta v3 the devnet packs by hand, built from the SDK's objects."""
    soroban = sx.SorobanTransactionMeta(
        ext=sx.SorobanTransactionMetaExt(0),
        events=[_sdk_event(e) for e in events],
        return_value=return_value if return_value is not None else scval.to_void(),
        diagnostic_events=diagnostics,
    )
    v3 = sx.TransactionMetaV3(
        ext=sx.ExtensionPoint(0),
        tx_changes_before=sx.LedgerEntryChanges([]),
        operations=[sx.OperationMeta(sx.LedgerEntryChanges([]))],
        tx_changes_after=sx.LedgerEntryChanges([]),
        soroban_meta=soroban,
    )
    return sx.TransactionMeta(3, v3=v3).to_xdr_bytes()


def test_events_and_meta_from_packed_parts_match_the_sdk_encoding() -> None:
    account = Keypair.from_raw_ed25519_seed(bytes(32)).public_key
    record = ContractEventRecord(
        CONTRACT,
        [scval.to_symbol("transfer"), scval.to_address(account), scval.to_address(CONTRACT)],
        scval.to_int128(-(10**20)),
    )
    packed = xdrgen.pack_event(record)
    assert packed.xdr == _sdk_event(record).to_xdr_bytes()
    assert packed.topics == [t.to_xdr_bytes() for t in record.topics]
    assert packed.data == record.data.to_xdr_bytes()
    value = scval.to_uint64(42)
    assert xdrgen.tx_meta_xdr([packed.xdr, packed.xdr], value.to_xdr_bytes(), []) == (
        _sdk_meta([record, record], value, [])
    )
    diagnostic = xdrgen.error_diagnostic(HostError("Contract", 5, CONTRACT, "no liquidity"))
    assert xdrgen.tx_meta_xdr([], None, [diagnostic.to_xdr_bytes()]) == (
        _sdk_meta([], None, [diagnostic])
    )


def test_struct_matches_the_sdk() -> None:
    fields = {
        "due_date": scval.to_uint64(1),
        "amount": scval.to_int128(2),
        "a": scval.to_bool(True),
        "Zeta": scval.to_void(),
        "amount_b": scval.to_string("x"),
    }
    assert to_struct(fields).to_xdr() == scval.to_struct(fields).to_xdr()


def _payment_tx(source: Keypair, **preconditions: Any) -> TransactionEnvelope:
    builder = TransactionBuilder(Account(source.public_key, 1), PASSPHRASE, 100)
    builder.append_payment_op(source.public_key, Asset.native(), "1")
    if preconditions:
        builder.add_time_bounds(**preconditions)
    return builder.build()


def test_envelopes_the_sdk_refuses_are_refused_with_its_message() -> None:
    chain = Chain(PASSPHRASE)
    source = Keypair.random()
    tx = (
        TransactionBuilder(Account(source.public_key, 1), PASSPHRASE, 100)
        .append_invoke_contract_function_op(CONTRACT, "get_pool_stats", [])
        .add_time_bounds(0, 10)
        .build()
    )
    raw = tx.to_xdr_object()
    assert raw.v1 is not None
    bounds = raw.v1.tx.cond.time_bounds
    assert bounds is not None
    bounds.min_time = sx.TimePoint(sx.Uint64(20))  # after max_time: the SDK refuses to read it
    with pytest.raises(RpcError) as refused:
        chain.simulate(raw.to_xdr())
    assert refused.value.code == -32602
    assert refused.value.message == (
        "invalid transaction envelope: min_time cannot be greater than max_time."
    )
    for garbage in ("garbage", "AAAA"):
        with pytest.raises(RpcError) as err:
            chain.submit(garbage)
        assert err.value.message.startswith("invalid transaction envelope: ")


def test_a_v0_envelope_is_hashed_like_the_sdk_hashes_it() -> None:
    chain = Chain(PASSPHRASE)
    source = Keypair.random()
    chain.fund(source.public_key, 10**9, None, 0)
    env = _payment_tx(source, min_time=0, max_time=0)
    env.transaction.v1 = False
    env.sign(source)
    sent = chain.submit(env.to_xdr())
    assert sent["hash"] == env.hash_hex()
    assert sent["status"] == "ERROR"  # a v0 transaction carries no Soroban data
