"""The hand-assembled invocation envelope must be byte for byte what the SDK's builder and
prepare step produce: the borrower's wallet and the network decode it with the SDK's rules."""

from __future__ import annotations

import base64

import pytest
from stellar_sdk import Account, Address, Keypair, SorobanDataBuilder, TransactionBuilder, scval
from stellar_sdk import xdr as sx

from chain.invocation import Invocation

PASSPHRASE = "Local Devnet ; invocation"
CONTRACT = "CA3D5KRYM6CB7OWQ6TWYRR3Z4T7GNZLKERYNZGGA5SOAOPIFY6YQGAXE"
CONTRACT_ADDRESS = Address(CONTRACT).to_xdr_sc_address()


def _args(borrower: str) -> list[sx.SCVal]:
    return [scval.to_address(borrower), scval.to_int128(12_500_000), scval.to_uint32(0)]


def _sdk_builder(source: Keypair, sequence: int, max_time: int) -> TransactionBuilder:
    return (
        TransactionBuilder(Account(source.public_key, sequence - 1), PASSPHRASE, 100)
        .append_invoke_contract_function_op(CONTRACT, "create_loan", _args(source.public_key))
        .add_time_bounds(0, max_time)
    )


def _invocation(source: Keypair, max_time: int) -> Invocation:
    return Invocation.build(
        source=source.public_key,
        base_fee=100,
        contract_id=CONTRACT,
        function="create_loan",
        args=_args(source.public_key),
        max_time=max_time,
    )


def test_unprepared_envelope_matches_the_sdk_builder() -> None:
    source = Keypair.random()
    expected = _sdk_builder(source, 2**40 + 7, 1_900_000_000).build().to_xdr()
    got = _invocation(source, 1_900_000_000).unprepared(sequence=2**40 + 7)
    assert base64.b64encode(got).decode() == expected


def test_prepared_envelope_matches_the_sdk_with_simulation_applied() -> None:
    source = Keypair.random()
    data = (
        SorobanDataBuilder()
        .set_read_only([sx.LedgerKey.from_xdr(_contract_key())])
        .set_resources(1_000_000, 400, 200)
        .set_resource_fee(54_321)
        .build()
    )
    auth = sx.SorobanAuthorizationEntry(
        credentials=sx.SorobanCredentials(
            sx.SorobanCredentialsType.SOROBAN_CREDENTIALS_SOURCE_ACCOUNT
        ),
        root_invocation=sx.SorobanAuthorizedInvocation(
            function=sx.SorobanAuthorizedFunction(
                sx.SorobanAuthorizedFunctionType.SOROBAN_AUTHORIZED_FUNCTION_TYPE_CONTRACT_FN,
                contract_fn=sx.InvokeContractArgs(
                    contract_address=CONTRACT_ADDRESS,
                    function_name=sx.SCSymbol(b"create_loan"),
                    args=[],
                ),
            ),
            sub_invocations=[],
        ),
    )
    # the builder adds the soroban data's resource fee to the base fee itself
    expected = _sdk_builder(source, 42, 1_900_000_000).set_soroban_data(data).build()
    assert expected.transaction.fee == 100 + 54_321
    expected.transaction.operations[0].auth = [auth]  # type: ignore[attr-defined]
    got = _invocation(source, 1_900_000_000).prepared(
        sequence=42, transaction_data=data.to_xdr(), min_resource_fee=54_321, auth=[auth.to_xdr()]
    )
    assert base64.b64encode(got).decode() == expected.to_xdr()


def test_garbage_from_simulation_is_refused() -> None:
    invocation = _invocation(Keypair.random(), 1_900_000_000)
    with pytest.raises(ValueError, match="transactionData"):
        invocation.prepared(sequence=1, transaction_data="%%%", min_resource_fee=1, auth=[])
    with pytest.raises(ValueError, match="fee"):
        invocation.prepared(sequence=1, transaction_data="", min_resource_fee=2**32, auth=[])


def _contract_key() -> str:
    return sx.LedgerKey(
        sx.LedgerEntryType.CONTRACT_DATA,
        contract_data=sx.LedgerKeyContractData(
            contract=CONTRACT_ADDRESS,
            key=sx.SCVal(sx.SCValType.SCV_LEDGER_KEY_CONTRACT_INSTANCE),
            durability=sx.ContractDataDurability.PERSISTENT,
        ),
    ).to_xdr()
