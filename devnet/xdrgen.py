"""XDR the devnet hands out: transaction results, meta, events, ledger entries and keys.

Everything here is real stellar XDR, so clients decode it with the same code they would use
against testnet."""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from stellar_sdk import scval
from stellar_sdk import xdr as sx

from devnet import addresses
from devnet.contracts import native_to_scval, to_struct
from devnet.host import INSTANCE_KEYS, ContractEventRecord, HostError, StorageKey

TRC = sx.TransactionResultCode


def tx_result(
    code: TRC, fee_charged: int, *, trapped: bool = False, success_hash: bytes | None = None
) -> sx.TransactionResult:
    results: list[sx.OperationResult] | None = None
    if code in (TRC.txSUCCESS, TRC.txFAILED):
        if success_hash is not None:
            ihf = sx.InvokeHostFunctionResult(
                sx.InvokeHostFunctionResultCode.INVOKE_HOST_FUNCTION_SUCCESS,
                success=sx.Hash(success_hash),
            )
        else:
            ihf = sx.InvokeHostFunctionResult(
                sx.InvokeHostFunctionResultCode.INVOKE_HOST_FUNCTION_TRAPPED
                if trapped
                else sx.InvokeHostFunctionResultCode.INVOKE_HOST_FUNCTION_MALFORMED
            )
        tr = sx.OperationResultTr(
            sx.OperationType.INVOKE_HOST_FUNCTION, invoke_host_function_result=ihf
        )
        results = [sx.OperationResult(sx.OperationResultCode.opINNER, tr=tr)]
    return sx.TransactionResult(
        fee_charged=sx.Int64(fee_charged),
        result=sx.TransactionResultResult(code, results=results),
        ext=sx.TransactionResultExt(0),
    )


def error_diagnostic(err: HostError) -> sx.DiagnosticEvent:
    """The `[error, Error(..)]` diagnostic event the host emits when an invocation fails."""
    topics = [scval.to_symbol("error"), err.to_scval()]
    data = scval.to_string(err.message or err.rendered)
    event = sx.ContractEvent(
        ext=sx.ExtensionPoint(0),
        contract_id=addresses.contract_id(err.contract) if err.contract else None,
        type=sx.ContractEventType.DIAGNOSTIC,
        body=sx.ContractEventBody(0, v0=sx.ContractEventV0(topics, data)),
    )
    return sx.DiagnosticEvent(in_successful_contract_call=False, event=event)


def host_error_text(err: HostError) -> str:
    """How simulateTransaction reports a failed invocation (the SDK shows it verbatim)."""
    where = f"contract:{err.contract}, " if err.contract else ""
    return (
        f"HostError: {err.rendered}\n\nEvent log (newest first):\n"
        f"   0: [Diagnostic Event] {where}topics:[error, {err.rendered}], "
        f"data:{(err.message or err.rendered)!r}"
    )


@dataclass(frozen=True)
class PackedEvent:
    """A contract event in XDR, each part encoded once: getEvents serves the topics and the
    value one by one, getTransaction and the meta the whole event."""

    contract_id: str
    topics: list[bytes]
    data: bytes
    xdr: bytes


def pack_event(record: ContractEventRecord) -> PackedEvent:
    """The record as an encoded ContractEvent:
    ext v0, contractID present (32-byte hash), type, body v0 with topics<> and data."""
    topics = [t.to_xdr_bytes() for t in record.topics]
    data = record.data.to_xdr_bytes()
    head = struct.pack(">iI", 0, 1) + addresses.contract_id(record.contract_id).contract_id.hash
    xdr = b"".join(
        [
            head,
            struct.pack(">iiI", sx.ContractEventType.CONTRACT.value, 0, len(topics)),
            *topics,
            data,
        ]
    )
    return PackedEvent(record.contract_id, topics, data, xdr)


# TransactionMeta v3 up to the Soroban events: ext v0, no txChangesBefore, one OperationMeta
# without changes, no txChangesAfter, sorobanMeta present, its ext v0.
_META_HEAD = struct.pack(">iiIIIIIi", 3, 0, 0, 1, 0, 0, 1, 0)
_VOID = scval.to_void().to_xdr_bytes()


def tx_meta_xdr(events: list[bytes], return_value: bytes | None, diagnostics: list[bytes]) -> bytes:
    """TransactionMeta v3 from events, return value and diagnostic events already in XDR, so
    what getTransaction also serves one by one is encoded once."""
    return b"".join(
        [
            _META_HEAD,
            struct.pack(">I", len(events)),
            *events,
            _VOID if return_value is None else return_value,
            struct.pack(">I", len(diagnostics)),
            *diagnostics,
        ]
    )


# -- ledger keys & entries --------------------------------------------------------------------
def slot_key_scval(key: StorageKey) -> sx.SCVal:
    """Persistent storage key: `vec[Symbol(name), args...]` (ints are u64 ids, strs addresses)."""
    parts: list[sx.SCVal] = [scval.to_symbol(key[0])]
    for part in key[1:]:
        parts.append(scval.to_uint64(part) if isinstance(part, int) else addresses.to_address(part))
    return scval.to_vec(parts)


def instance_ledger_key(contract_id: str) -> sx.LedgerKey:
    return sx.LedgerKey(
        sx.LedgerEntryType.CONTRACT_DATA,
        contract_data=sx.LedgerKeyContractData(
            contract=addresses.sc_address(contract_id),
            key=sx.SCVal(sx.SCValType.SCV_LEDGER_KEY_CONTRACT_INSTANCE),
            durability=sx.ContractDataDurability.PERSISTENT,
        ),
    )


def slot_ledger_key(contract_id: str, key: StorageKey) -> sx.LedgerKey:
    if key[0] in INSTANCE_KEYS:
        return instance_ledger_key(contract_id)
    return sx.LedgerKey(
        sx.LedgerEntryType.CONTRACT_DATA,
        contract_data=sx.LedgerKeyContractData(
            contract=addresses.sc_address(contract_id),
            key=slot_key_scval(key),
            durability=sx.ContractDataDurability.PERSISTENT,
        ),
    )


# Simulation lists the same few keys (pool and creditline instances, the token balances) for
# every loan; a ledger key is a pure function of its slot, so its XDR is encoded once.
_KEY_CACHE_SIZE = 1 << 16


@lru_cache(maxsize=_KEY_CACHE_SIZE)
def instance_ledger_key_xdr(contract_id: str) -> bytes:
    return instance_ledger_key(contract_id).to_xdr_bytes()


@lru_cache(maxsize=_KEY_CACHE_SIZE)
def slot_ledger_key_xdr(contract_id: str, key: StorageKey) -> bytes:
    return slot_ledger_key(contract_id, key).to_xdr_bytes()


def account_entry(account_id: str, balance: int, seq: int) -> sx.LedgerEntryData:
    entry = sx.AccountEntry(
        account_id=addresses.account_id(account_id),
        balance=sx.Int64(balance),
        seq_num=sx.SequenceNumber(sx.Int64(seq)),
        num_sub_entries=sx.Uint32(0),
        inflation_dest=None,
        flags=sx.Uint32(0),
        home_domain=sx.String32(b""),
        thresholds=sx.Thresholds(bytes([1, 0, 0, 0])),
        signers=[],
        ext=sx.AccountEntryExt(0),
    )
    return sx.LedgerEntryData(sx.LedgerEntryType.ACCOUNT, account=entry)


def instance_entry(contract_id: str, kind: str, storage: dict[str, Any]) -> sx.LedgerEntryData:
    wasm_hash = hashlib.sha256(f"devnet-model:{kind}".encode()).digest()
    entries = [
        sx.SCMapEntry(scval.to_symbol(name), native_to_scval(value))
        for name, value in sorted(storage.items())
    ]
    instance = sx.SCContractInstance(
        executable=sx.ContractExecutable(
            sx.ContractExecutableType.CONTRACT_EXECUTABLE_WASM, wasm_hash=sx.Hash(wasm_hash)
        ),
        storage=sx.SCMap(entries),
    )
    return _data_entry(
        contract_id,
        sx.SCVal(sx.SCValType.SCV_LEDGER_KEY_CONTRACT_INSTANCE),
        sx.SCVal(sx.SCValType.SCV_CONTRACT_INSTANCE, instance=instance),
    )


def slot_entry(contract_id: str, kind: str, key: StorageKey, value: Any) -> sx.LedgerEntryData:
    if kind == "token" and key[0] == "Balance":
        # the Stellar Asset Contract's balance shape, so `get_sac_balance`-style readers work
        val = to_struct(
            {
                "amount": scval.to_int128(value),
                "authorized": scval.to_bool(True),
                "clawback": scval.to_bool(False),
            }
        )
    else:
        val = native_to_scval(value)
    return _data_entry(contract_id, slot_key_scval(key), val)


def _data_entry(contract_id: str, key: sx.SCVal, val: sx.SCVal) -> sx.LedgerEntryData:
    return sx.LedgerEntryData(
        sx.LedgerEntryType.CONTRACT_DATA,
        contract_data=sx.ContractDataEntry(
            ext=sx.ExtensionPoint(0),
            contract=addresses.sc_address(contract_id),
            key=key,
            durability=sx.ContractDataDurability.PERSISTENT,
            val=val,
        ),
    )


def footprint_data(
    read_only: list[sx.LedgerKey],
    read_write: list[sx.LedgerKey],
    instructions: int,
    read_bytes: int,
    write_bytes: int,
    resource_fee: int,
) -> sx.SorobanTransactionData:
    return sx.SorobanTransactionData(
        ext=sx.SorobanTransactionDataExt(0),
        resources=sx.SorobanResources(
            footprint=sx.LedgerFootprint(read_only=read_only, read_write=read_write),
            instructions=sx.Uint32(instructions),
            disk_read_bytes=sx.Uint32(read_bytes),
            write_bytes=sx.Uint32(write_bytes),
        ),
        resource_fee=sx.Int64(resource_fee),
    )


def soroban_data_xdr(
    read_only: list[bytes],
    read_write: list[bytes],
    instructions: int,
    read_bytes: int,
    write_bytes: int,
    resource_fee: int,
) -> bytes:
    """`footprint_data(...).to_xdr_bytes()` for ledger keys already in XDR.

    Packing the footprint's keys again was most of the cost of a simulation; the enclosing
    structs are fixed-size fields around two counted arrays, laid out here in XDR order:
    ext (v0), footprint (readOnly<>, readWrite<>), instructions, diskReadBytes, writeBytes
    (uint32 each), resourceFee (int64)."""
    return b"".join(
        [
            struct.pack(">iI", 0, len(read_only)),
            *read_only,
            struct.pack(">I", len(read_write)),
            *read_write,
            struct.pack(">IIIq", instructions, read_bytes, write_bytes, resource_fee),
        ]
    )


def resource_fee(keys: int, instructions: int, read_bytes: int, write_bytes: int) -> int:
    """The devnet's fee schedule: a deterministic function of the declared resources, so a
    transaction whose declared resource fee is below it is refused like on the network."""
    return 10_000 + 2_500 * keys + instructions // 100 + read_bytes + 2 * write_bytes


def min_resource_fee(resources: sx.SorobanResources) -> int:
    return resource_fee(
        len(resources.footprint.read_only) + len(resources.footprint.read_write),
        resources.instructions.uint32,
        resources.disk_read_bytes.uint32,
        resources.write_bytes.uint32,
    )


@lru_cache(maxsize=4)
def ledger_header_xdr(seq: int, close_time: int, prev_hash: bytes, base_fee: int) -> str:
    """The header's XDR, encoded once per ledger: getLatestLedger is the most polled call."""
    return ledger_header(seq, close_time, prev_hash, base_fee).to_xdr()


def ledger_header(seq: int, close_time: int, prev_hash: bytes, base_fee: int) -> sx.LedgerHeader:
    zero = sx.Hash(bytes(32))
    return sx.LedgerHeader(
        ledger_version=sx.Uint32(23),
        previous_ledger_hash=sx.Hash(prev_hash),
        scp_value=sx.StellarValue(
            tx_set_hash=zero,
            close_time=sx.TimePoint(sx.Uint64(close_time)),
            upgrades=[],
            ext=sx.StellarValueExt(sx.StellarValueType.STELLAR_VALUE_BASIC),
        ),
        tx_set_result_hash=zero,
        bucket_list_hash=zero,
        ledger_seq=sx.Uint32(seq),
        total_coins=sx.Int64(1_000_000_000_000_000_000),
        fee_pool=sx.Int64(0),
        inflation_seq=sx.Uint32(0),
        id_pool=sx.Uint64(0),
        base_fee=sx.Uint32(base_fee),
        base_reserve=sx.Uint32(5_000_000),
        max_tx_set_size=sx.Uint32(1000),
        skip_list=[zero, zero, zero, zero],
        ext=sx.LedgerHeaderExt(0),
    )
