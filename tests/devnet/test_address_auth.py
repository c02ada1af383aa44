"""Address-credential authorization on the devnet, checked as the network checks it: a channel
account is the transaction's source and fee payer, the borrower only signs a
SorobanAuthorizationEntry (stellar-sdk's `authorize_entry`, over the
ENVELOPE_TYPE_SOROBAN_AUTHORIZATION preimage). Each way a real network fails such a
transaction fails it here, with the host's error in the diagnostic event."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from stellar_sdk import Keypair, SorobanServerAsync, TransactionBuilder
from stellar_sdk import xdr as sx
from stellar_sdk.auth import authorize_entry

from chain.client import ChainClient, loan_args
from chain.types import FailureReason, TxStatus
from core.money import UNIT
from devnet.addresses import sc_address as addresses_of
from devnet.kit import DeployedPool, devnet_call, fund_account, wait_for_tx
from tests.chain.helpers import loan_terms
from tests.fixtures.devnet import BORROWER_TOKENS


@dataclass
class Relayer:
    server: SorobanServerAsync
    client: ChainClient
    passphrase: str
    rpc_url: str

    async def unsigned(
        self, channel: Keypair, creditline: str, args: list[sx.SCVal]
    ) -> tuple[sx.TransactionEnvelope, sx.SorobanAuthorizationEntry]:
        """The channel's create_loan transaction, simulated in recording mode: the prepared
        envelope and the borrower's (unsigned, address-credential) entry it recorded."""
        account = await self.server.load_account(channel.public_key)
        tx = (
            TransactionBuilder(account, self.passphrase, 100)
            .append_invoke_contract_function_op(creditline, "create_loan", args)
            .set_timeout(120)
            .build()
        )
        prepared = await self.server.prepare_transaction(tx)
        op = prepared.transaction.operations[0]
        (entry,) = op.auth  # type: ignore[attr-defined]
        return prepared.to_xdr_object(), entry

    async def send(
        self, channel: Keypair, envelope: sx.TransactionEnvelope, auth: list
    ) -> TxStatus:
        """Put `auth` in the envelope, give it the channel's next sequence number, sign it as
        the channel, submit and wait for the ledger."""
        from stellar_sdk import TransactionEnvelope

        env = copy.deepcopy(envelope)
        assert env.v1 is not None
        account = await self.server.load_account(channel.public_key)
        env.v1.tx.seq_num = sx.SequenceNumber(sx.Int64(account.sequence + 1))
        body = env.v1.tx.operations[0].body.invoke_host_function_op
        assert body is not None
        body.auth = list(auth)
        env.v1.signatures = []
        signed = TransactionEnvelope.from_xdr_object(env, self.passphrase)
        signed.sign(channel)
        sent = await self.client.submit(signed.to_xdr())
        assert sent.status == "pending", sent
        return await wait_for_tx(self.client, sent.tx_hash)

    async def latest(self) -> int:
        return await self.client.latest_ledger()


@pytest.fixture
async def relayer(devnet, chain_client) -> AsyncIterator[Relayer]:
    server = SorobanServerAsync(devnet.rpc_url)
    try:
        yield Relayer(server, chain_client, devnet.passphrase, devnet.rpc_url)
    finally:
        await server.close()


async def _borrower(devnet, pool: DeployedPool, *, xlm: int = 0) -> Keypair:
    """A borrower with no XLM at all (an existing account, guarantee tokens only)."""
    kp = Keypair.random()
    await fund_account(
        devnet.rpc_url, kp.public_key, xlm=xlm, token_id=pool.token_id, token_amount=BORROWER_TOKENS
    )
    return kp


async def _channel(devnet) -> Keypair:
    kp = Keypair.random()
    await fund_account(devnet.rpc_url, kp.public_key)
    return kp


def _args(borrower: str, total: int = 10 * UNIT) -> list[sx.SCVal]:
    return loan_args(loan_terms(borrower, total=total, guarantee=total // 5))


async def test_signed_entry_funds_a_loan_whose_borrower_has_no_xlm(
    devnet, deploy_pool, relayer
) -> None:
    pool = await deploy_pool(liquidity=100 * UNIT)
    borrower, channel = await _borrower(devnet, pool), await _channel(devnet)
    envelope, entry = await relayer.unsigned(
        channel, pool.creditline_id, _args(borrower.public_key)
    )
    assert entry.credentials.type == sx.SorobanCredentialsType.SOROBAN_CREDENTIALS_ADDRESS
    assert entry.credentials.address is not None
    assert entry.credentials.address.signature.type == sx.SCValType.SCV_VOID
    signed = authorize_entry(entry, borrower, await relayer.latest() + 20, devnet.passphrase)
    status = await relayer.send(channel, envelope, [signed])
    assert status.status == "success", status
    assert status.chain_loan_id is not None
    stats = await relayer.client.pool_stats(pool.pool_id)
    assert stats.locked_liquidity == 8 * UNIT


async def test_missing_unsigned_and_foreign_signed_entries_fail_auth(
    devnet, deploy_pool, relayer
) -> None:
    pool = await deploy_pool(liquidity=100 * UNIT)
    borrower, channel = await _borrower(devnet, pool), await _channel(devnet)
    envelope, entry = await relayer.unsigned(
        channel, pool.creditline_id, _args(borrower.public_key)
    )
    until = await relayer.latest() + 20
    foreign = authorize_entry(entry, Keypair.random(), until, devnet.passphrase)
    for auth in ([], [entry], [foreign]):
        status = await relayer.send(channel, envelope, auth)
        assert (status.status, status.reason, status.detail) == (
            "failed",
            FailureReason.BAD_AUTH,
            "Error(Auth, InvalidAction)",
        ), auth
    stats = await relayer.client.pool_stats(pool.pool_id)
    assert stats.locked_liquidity == 0  # nothing applied, the channel paid the fees
    # the entry was never consumed: signed by the borrower it still funds
    signed = authorize_entry(entry, borrower, until, devnet.passphrase)
    assert (await relayer.send(channel, envelope, [signed])).status == "success"


async def test_tampered_invocation_is_not_authorized(devnet, deploy_pool, relayer) -> None:
    """The entry signs one invocation; a transaction for other arguments (a bigger loan) finds
    no matching entry, and an entry whose signed tree was edited fails its signature."""
    pool = await deploy_pool(liquidity=100 * UNIT)
    borrower, channel = await _borrower(devnet, pool), await _channel(devnet)
    _, entry = await relayer.unsigned(channel, pool.creditline_id, _args(borrower.public_key))
    signed = authorize_entry(entry, borrower, await relayer.latest() + 20, devnet.passphrase)
    bigger, _ = await relayer.unsigned(
        channel, pool.creditline_id, _args(borrower.public_key, total=50 * UNIT)
    )
    status = await relayer.send(channel, bigger, [signed])
    assert (status.status, status.detail) == ("failed", "Error(Auth, InvalidAction)")
    edited = copy.deepcopy(signed)
    fn = edited.root_invocation.function.contract_fn
    assert fn is not None
    fn.args[2] = _args(borrower.public_key, total=50 * UNIT)[2]
    status = await relayer.send(channel, bigger, [edited])
    assert (status.status, status.detail) == ("failed", "Error(Auth, InvalidAction)")


async def test_replayed_entry_fails_existing_nonce(devnet, deploy_pool, relayer) -> None:
    pool = await deploy_pool(liquidity=100 * UNIT)
    borrower, channel = await _borrower(devnet, pool), await _channel(devnet)
    args = _args(borrower.public_key)
    envelope, entry = await relayer.unsigned(channel, pool.creditline_id, args)
    signed = authorize_entry(entry, borrower, await relayer.latest() + 20, devnet.passphrase)
    assert (await relayer.send(channel, envelope, [signed])).status == "success"
    again, _ = await relayer.unsigned(channel, pool.creditline_id, args)
    status = await relayer.send(channel, again, [signed])  # a new transaction, the same entry
    assert (status.status, status.reason, status.detail) == (
        "failed",
        FailureReason.BAD_AUTH,
        "Error(Auth, ExistingValue)",
    )
    assert (await relayer.client.pool_stats(pool.pool_id)).locked_liquidity == 8 * UNIT


async def test_expired_entry_fails_and_expiration_is_inclusive(
    devnet, deploy_pool, relayer
) -> None:
    """Valid through `signature_expiration_ledger` inclusive: signed for the current ledger it
    can never apply (the earliest ledger is the next one)."""
    pool = await deploy_pool(liquidity=100 * UNIT)
    borrower, channel = await _borrower(devnet, pool), await _channel(devnet)
    envelope, entry = await relayer.unsigned(
        channel, pool.creditline_id, _args(borrower.public_key)
    )
    stale = authorize_entry(entry, borrower, await relayer.latest(), devnet.passphrase)
    status = await relayer.send(channel, envelope, [stale])
    assert (status.status, status.reason, status.detail) == (
        "failed",
        FailureReason.BAD_AUTH,
        "Error(Auth, InvalidInput)",
    )
    far = authorize_entry(entry, borrower, await relayer.latest() + 4_000_000, devnet.passphrase)
    status = await relayer.send(channel, envelope, [far])
    assert (status.status, status.detail) == ("failed", "Error(Auth, InvalidInput)")


async def test_signer_account_must_exist(devnet, deploy_pool, relayer) -> None:
    """The borrower's entry and invocation rewritten for an account that was never created
    (simulation would stop at its empty token balance; authorization comes first at apply)."""
    pool = await deploy_pool(liquidity=100 * UNIT)
    borrower, channel = await _borrower(devnet, pool), await _channel(devnet)
    ghost = Keypair.random()  # never created on chain
    envelope, entry = await relayer.unsigned(
        channel, pool.creditline_id, _args(borrower.public_key)
    )
    ghost_addr = sx.SCVal(sx.SCValType.SCV_ADDRESS, address=addresses_of(ghost.public_key))
    assert envelope.v1 is not None
    op = envelope.v1.tx.operations[0].body.invoke_host_function_op
    assert op is not None and op.host_function.invoke_contract is not None
    op.host_function.invoke_contract.args[0] = ghost_addr
    fn = entry.root_invocation.function.contract_fn
    assert fn is not None and entry.credentials.address is not None
    fn.args[0] = ghost_addr
    entry.credentials.address.address = addresses_of(ghost.public_key)
    signed = authorize_entry(entry, ghost, await relayer.latest() + 20, devnet.passphrase)
    status = await relayer.send(channel, envelope, [signed])
    assert (status.status, status.detail) == ("failed", "Error(Auth, InvalidAction)")


async def test_simulation_enforces_the_entries_it_is_given(devnet, deploy_pool, relayer) -> None:
    """With auth entries in the transaction, simulation runs in enforcing mode (Soroban RPC's
    default): a foreign signature is refused before anything is submitted."""
    pool = await deploy_pool(liquidity=100 * UNIT)
    borrower, channel = await _borrower(devnet, pool), await _channel(devnet)
    envelope, entry = await relayer.unsigned(
        channel, pool.creditline_id, _args(borrower.public_key)
    )
    until = await relayer.latest() + 20
    from stellar_sdk import TransactionEnvelope

    for signer, ok in ((Keypair.random(), False), (borrower, True)):
        env = copy.deepcopy(envelope)
        assert env.v1 is not None
        body = env.v1.tx.operations[0].body.invoke_host_function_op
        assert body is not None
        body.auth = [authorize_entry(entry, signer, until, devnet.passphrase)]
        sim = await relayer.server.simulate_transaction(
            TransactionEnvelope.from_xdr_object(env, devnet.passphrase)
        )
        assert (sim.error is None) == ok, sim.error
        if not ok:
            assert "Error(Auth, InvalidAction)" in (sim.error or "")


async def test_try_again_later_switch(devnet, deploy_pool, relayer) -> None:
    pool = await deploy_pool(liquidity=100 * UNIT)
    borrower, channel = await _borrower(devnet, pool), await _channel(devnet)
    envelope, entry = await relayer.unsigned(
        channel, pool.creditline_id, _args(borrower.public_key)
    )
    signed = authorize_entry(entry, borrower, await relayer.latest() + 20, devnet.passphrase)
    from stellar_sdk import TransactionEnvelope

    env = copy.deepcopy(envelope)
    assert env.v1 is not None
    body = env.v1.tx.operations[0].body.invoke_host_function_op
    assert body is not None
    body.auth = [signed]
    tx = TransactionEnvelope.from_xdr_object(env, devnet.passphrase)
    tx.sign(channel)
    await devnet_call(devnet.rpc_url, "devnet_tryAgainLater", {"count": 2})
    results = [(await relayer.client.submit(tx.to_xdr())).status for _ in range(3)]
    assert results == ["try_again_later", "try_again_later", "pending"]
    status = await wait_for_tx(relayer.client, tx.hash_hex())
    assert status.status == "success"


async def test_bump_sequence_knocks_the_channel_out_of_step(devnet, deploy_pool, relayer) -> None:
    pool = await deploy_pool(liquidity=100 * UNIT)
    borrower, channel = await _borrower(devnet, pool), await _channel(devnet)
    envelope, _entry = await relayer.unsigned(
        channel, pool.creditline_id, _args(borrower.public_key)
    )
    seq = (await relayer.server.load_account(channel.public_key)).sequence
    await devnet_call(
        devnet.rpc_url, "devnet_bumpSequence", {"account": channel.public_key, "sequence": seq + 5}
    )
    from stellar_sdk import TransactionEnvelope

    env = copy.deepcopy(envelope)
    assert env.v1 is not None
    tx = TransactionEnvelope.from_xdr_object(env, devnet.passphrase)
    tx.sign(channel)
    sent = await relayer.client.submit(tx.to_xdr())
    assert (sent.status, sent.reason) == ("error", FailureReason.BAD_SEQ)
    assert (await relayer.server.load_account(channel.public_key)).sequence == seq + 5
