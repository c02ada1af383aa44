"""A contract invocation transaction, encoded once and finished from simulation's bytes.

The SDK's path (TransactionBuilder, simulate, prepare, encode) encodes the transaction twice and
decodes simulation's footprint and auth entries only to encode them again; for the funding
transaction that was about half of the saga's client CPU per loan. Here the parts that do not
change (source, sequence, time bounds, the host function with its arguments) are encoded once,
and simulation's `transactionData` and auth entries are spliced in as the XDR they already are.
The layout is the v1 `TransactionEnvelope`:

    ENVELOPE_TYPE_TX | Transaction{source, fee, seqNum, cond, memo, operations<1>, ext} | sigs<0>

with the single operation `{sourceAccount: absent, body: INVOKE_HOST_FUNCTION{hostFunction,
auth<>}}` and `ext` = 0 before simulation, 1 + SorobanTransactionData after.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from stellar_sdk import Address, MuxedAccount
from stellar_sdk import xdr as sx

from chain.envelope import ENVELOPE_TYPE_TX

_INVOKE_HOST_FUNCTION = sx.OperationType.INVOKE_HOST_FUNCTION.value.to_bytes(4, "big")
_ABSENT = (0).to_bytes(4, "big")  # optional op source, MEMO_NONE, empty arrays, ext v0
_ONE = (1).to_bytes(4, "big")


def _u32(value: int) -> bytes:
    return value.to_bytes(4, "big")


def _b64(field: str, value: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"simulation returned a {field} that is not base64") from exc


@dataclass(frozen=True)
class Invocation:
    """One InvokeHostFunction transaction before its resources are known."""

    source: bytes  # sourceAccount (fee and seqNum follow it)
    body: bytes  # cond, memo, operations<1>, op source, op type, hostFunction
    base_fee: int

    @classmethod
    def build(
        cls,
        *,
        source: str,
        base_fee: int,
        contract_id: str,
        function: str,
        args: list[sx.SCVal],
        max_time: int,
    ) -> Invocation:
        host_function = sx.HostFunction(
            sx.HostFunctionType.HOST_FUNCTION_TYPE_INVOKE_CONTRACT,
            invoke_contract=sx.InvokeContractArgs(
                contract_address=Address(contract_id).to_xdr_sc_address(),
                function_name=sx.SCSymbol(function.encode()),
                args=args,
            ),
        )
        cond = sx.Preconditions(
            sx.PreconditionType.PRECOND_TIME,
            time_bounds=sx.TimeBounds(
                min_time=sx.TimePoint(sx.Uint64(0)), max_time=sx.TimePoint(sx.Uint64(max_time))
            ),
        )
        body = b"".join(
            [
                cond.to_xdr_bytes(),
                _ABSENT,  # memo: MEMO_NONE
                _ONE,  # one operation
                _ABSENT,  # without its own source account
                _INVOKE_HOST_FUNCTION,
                host_function.to_xdr_bytes(),
            ]
        )
        encoded_source = MuxedAccount.from_account(source).to_xdr_object().to_xdr_bytes()
        return cls(source=encoded_source, body=body, base_fee=base_fee)

    def _transaction_head(self, fee: int, sequence: int) -> list[bytes]:
        if not 0 <= fee < 2**32:
            raise ValueError(f"fee {fee} does not fit a transaction")
        seq = sequence.to_bytes(8, "big", signed=True)
        return [ENVELOPE_TYPE_TX, self.source, _u32(fee), seq, self.body]

    def unprepared(self, *, sequence: int) -> bytes:
        """The envelope to simulate: base fee, no auth entries, no Soroban data, unsigned."""
        parts = self._transaction_head(self.base_fee, sequence)
        return b"".join([*parts, _ABSENT, _ABSENT, _ABSENT])  # auth<0>, ext v0, signatures<0>

    def prepared(
        self, *, sequence: int, transaction_data: str, min_resource_fee: int, auth: list[str]
    ) -> bytes:
        """The envelope to sign: simulation's resources, resource fee and auth entries added."""
        parts = self._transaction_head(self.base_fee + min_resource_fee, sequence)
        parts.append(_u32(len(auth)))
        parts += [_b64("auth entry", entry) for entry in auth]
        parts += [_ONE, _b64("transactionData", transaction_data), _ABSENT]
        return b"".join(parts)
