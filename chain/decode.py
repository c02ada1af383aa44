"""Turn what the chain says (result codes, host errors, events) into the project's typed values.

Kept apart from the client so the watcher and tests can decode stored XDR without a connection."""

from __future__ import annotations

import re
from typing import Any

from stellar_sdk import Address, StrKey, TransactionEnvelope, scval
from stellar_sdk import xdr as sx
from stellar_sdk.operation import InvokeHostFunction
from stellar_sdk.soroban_rpc import EventInfo

from chain.types import ChainEvent, FailureReason

TRC = sx.TransactionResultCode

RESULT_CODE_REASONS: dict[TRC, FailureReason] = {
    TRC.txTOO_LATE: FailureReason.TOO_LATE,
    TRC.txTOO_EARLY: FailureReason.TOO_EARLY,
    TRC.txBAD_AUTH: FailureReason.BAD_AUTH,
    TRC.txBAD_AUTH_EXTRA: FailureReason.BAD_AUTH,
    TRC.txBAD_SEQ: FailureReason.BAD_SEQ,
    TRC.txINSUFFICIENT_FEE: FailureReason.INSUFFICIENT_FEE,
    TRC.txINSUFFICIENT_BALANCE: FailureReason.INSUFFICIENT_BALANCE,
    TRC.txNO_ACCOUNT: FailureReason.NO_ACCOUNT,
    TRC.txMALFORMED: FailureReason.MALFORMED,
}

# Codes raised by the contract that was invoked directly, per function.
TOP_LEVEL_CODES: dict[str, dict[int, FailureReason]] = {
    "create_loan": {
        2: FailureReason.INSUFFICIENT_GUARANTEE,
        3: FailureReason.VENDOR_NOT_ACTIVE,
        4: FailureReason.INSUFFICIENT_REPUTATION,
        5: FailureReason.INSUFFICIENT_LIQUIDITY,
        9: FailureReason.INVALID_AMOUNT,
        16: FailureReason.INVALID_VENDOR,
        17: FailureReason.VENDOR_VALIDATION_FAILED,
        18: FailureReason.EXPOSURE_LIMIT_EXCEEDED,
        20: FailureReason.PARAMETERS_UNAVAILABLE,
        27: FailureReason.INVALID_DUE_DATE,
    },
    "withdraw": {6: FailureReason.INSUFFICIENT_LIQUIDITY},
    "fund_loan": {6: FailureReason.INSUFFICIENT_LIQUIDITY, 9: FailureReason.NOT_CREDITLINE},
    "transfer": {10: FailureReason.INSUFFICIENT_BALANCE},
}
# Codes raised by a contract called from the invoked one (the pool under the creditline, the token).
NESTED_CODES: dict[int, FailureReason] = {
    6: FailureReason.INSUFFICIENT_LIQUIDITY,  # pool fund_loan
    9: FailureReason.NOT_CREDITLINE,  # pool fund_loan
    10: FailureReason.INSUFFICIENT_BALANCE,  # token transfer (guarantee)
}

_HOST_ERROR = re.compile(r"Error\((\w+), #?(\w+)\)")
_CONTRACT = re.compile(r"contract:(C[A-Z2-7]{55})")


def result_code(result_xdr: str) -> TRC:
    return sx.TransactionResult.from_xdr(result_xdr).result.code


def reason_for_code(code: TRC) -> FailureReason:
    return RESULT_CODE_REASONS.get(code, FailureReason.UNKNOWN)


def reason_for_contract_error(
    code: int, failing: str | None, invoked: str | None, function: str | None
) -> FailureReason:
    if failing is not None and invoked is not None and failing != invoked:
        return NESTED_CODES.get(code, FailureReason.CONTRACT_ERROR)
    return TOP_LEVEL_CODES.get(function or "", {}).get(code, FailureReason.CONTRACT_ERROR)


def reason_for_host_error(
    kind: str, code: str, failing: str | None, invoked: str | None, function: str | None
) -> FailureReason:
    if kind == "Contract" and code.isdigit():
        return reason_for_contract_error(int(code), failing, invoked, function)
    if kind == "Auth":
        return FailureReason.BAD_AUTH
    return FailureReason.CONTRACT_ERROR


def decode_simulation_error(
    text: str, invoked: str | None, function: str | None
) -> tuple[FailureReason, str]:
    match = _HOST_ERROR.search(text)
    if match is None:
        if "not found" in text and "account" in text:
            return FailureReason.NO_ACCOUNT, text
        return FailureReason.UNKNOWN, text
    contract = _CONTRACT.search(text)
    reason = reason_for_host_error(
        match.group(1), match.group(2), contract.group(1) if contract else None, invoked, function
    )
    return reason, match.group(0)


def invoked_function(envelope_xdr: str, passphrase: str) -> tuple[str | None, str | None]:
    """(contract id, function name) of a single-invocation envelope; (None, None) otherwise."""
    try:
        env = TransactionEnvelope.from_xdr(envelope_xdr, passphrase)
    except Exception:
        return None, None
    ops = env.transaction.operations
    if len(ops) != 1 or not isinstance(ops[0], InvokeHostFunction):
        return None, None
    args = ops[0].host_function.invoke_contract
    if args is None:
        return None, None
    return (
        Address.from_xdr_sc_address(args.contract_address).address,
        args.function_name.sc_symbol.decode(),
    )


def error_from_diagnostics(diagnostics: list[str]) -> tuple[str, str, str | None] | None:
    """(kind, code, failing contract) from the host's `[error, Error(..)]` diagnostic event."""
    for raw in diagnostics:
        try:
            event = sx.DiagnosticEvent.from_xdr(raw).event
        except Exception:
            continue
        body = event.body.v0
        if body is None or len(body.topics) < 2:
            continue
        if (
            body.topics[0].type != sx.SCValType.SCV_SYMBOL
            or scval.from_symbol(body.topics[0]) != "error"
        ):
            continue
        err = body.topics[1].error
        if body.topics[1].type != sx.SCValType.SCV_ERROR or err is None:
            continue
        contract = (
            StrKey.encode_contract(event.contract_id.contract_id.hash)
            if event.contract_id is not None
            else None
        )
        if err.type == sx.SCErrorType.SCE_CONTRACT and err.contract_code is not None:
            return "Contract", str(err.contract_code.uint32), contract
        kind = err.type.name.removeprefix("SCE_").title().replace("_", "")
        code = err.code.name.removeprefix("SCEC_").title().replace("_", "") if err.code else "?"
        return kind, code, contract
    return None


def meta_diagnostics(meta_xdr: str | None) -> list[str]:
    if not meta_xdr:
        return []
    meta = sx.TransactionMeta.from_xdr(meta_xdr)
    if meta.v3 is not None and meta.v3.soroban_meta is not None:
        return [d.to_xdr() for d in meta.v3.soroban_meta.diagnostic_events]
    if meta.v4 is not None:
        return [d.to_xdr() for d in meta.v4.diagnostic_events]
    return []


def return_value(meta_xdr: str | None) -> Any:
    """Native return value of the invocation, read from the transaction meta (v3 or v4)."""
    if not meta_xdr:
        return None
    meta = sx.TransactionMeta.from_xdr(meta_xdr)
    if meta.v3 is not None and meta.v3.soroban_meta is not None:
        return scval.to_native(meta.v3.soroban_meta.return_value)
    if meta.v4 is not None and meta.v4.soroban_meta is not None:
        rv = meta.v4.soroban_meta.return_value
        return scval.to_native(rv) if rv is not None else None
    return None


def _plain(value: Any) -> Any:
    """Native SCVal values made JSON-friendly (addresses as strkeys, bytes as hex)."""
    if isinstance(value, Address):
        return value.address
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(_plain(k)): _plain(v) for k, v in value.items()}
    return value


def decode_event(info: EventInfo) -> ChainEvent:
    topics = [_plain(scval.to_native(t)) for t in info.topic]
    name = topics[0] if topics and isinstance(topics[0], str) else ""
    return ChainEvent(
        id=info.id,
        ledger=info.ledger,
        contract_id=info.contract_id,
        name=name,
        topics=topics[1:],
        data=_plain(scval.to_native(info.value)),
        tx_hash=info.transaction_hash,
    )
