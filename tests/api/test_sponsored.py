"""Sponsored funding end to end over real HTTP: a saga stack with FUNDING_MODE=sponsored and four
funded channel accounts (real devnet, Temporal dev server, Redis), its own API process in the
session's loop. Borrowers hold no XLM: they sign only the offered authorization entry with
stellar-sdk's `authorize_entry`; a channel account pays, sequences and signs."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from stellar_sdk import Keypair
from stellar_sdk import xdr as sx
from stellar_sdk.auth import authorize_entry

from api.app import create_app
from api.auth.keys import ApiKeyStore
from api.auth.principal import SCOPES
from core.money import UNIT
from devnet.kit import DeployedPool, deploy_pool, devnet_call, fund_account
from tests.api.helpers import assert_error, key, loan_body, wait_state
from tests.fixtures.devnet import BORROWER_TOKENS, LEDGER_INTERVAL
from tests.fixtures.temporal import register_pool, running_saga_stack
from tools.procs import free_port

CHANNELS = 4


@dataclass
class Sponsored:
    http: httpx.AsyncClient
    stack: Any
    channels: list[Keypair]
    devnet: Any

    async def pool(self, liquidity_units: int) -> DeployedPool:
        deployed = await deploy_pool(
            self.devnet.rpc_url, self.devnet.passphrase, liquidity=liquidity_units * UNIT
        )
        await register_pool(self.stack.settings, self.stack.ledger, self.stack.chain, deployed)
        return deployed

    async def borrower(self, pool: DeployedPool) -> Keypair:
        """An account with guarantee tokens and no XLM at all."""
        kp = Keypair.random()
        await fund_account(
            self.devnet.rpc_url,
            kp.public_key,
            xlm=0,
            token_id=pool.token_id,
            token_amount=BORROWER_TOKENS,
        )
        return kp

    async def open(self, pool: DeployedPool, borrower: Keypair, **kw: Any) -> dict[str, Any]:
        vendor = Keypair.random().public_key
        resp = await self.http.post(
            "/v1/loans",
            json=loan_body(pool.pool_id, borrower.public_key, vendor, **kw),
            headers=key(),
        )
        assert resp.status_code == 201, resp.text
        created: dict[str, Any] = resp.json()
        return created

    def sign(self, created: dict[str, Any], signer: Keypair) -> str:
        funding = created["funding"]
        signed = authorize_entry(
            funding["auth_entry"],
            signer,
            funding["valid_until_ledger"],
            self.devnet.passphrase,
        )
        return signed.to_xdr()

    async def submit(self, loan_id: str, signed_entry: str) -> httpx.Response:
        """Submit, waiting out 503 channels_busy as a client would (Retry-After)."""
        for _ in range(200):
            resp = await self.http.post(
                f"/v1/loans/{loan_id}/submit", json={"signed_auth_entry": signed_entry}
            )
            if resp.status_code != 503:
                return resp
            assert resp.json()["error"]["code"] == "channels_busy", resp.text
            assert int(resp.headers["Retry-After"]) >= 1
            await asyncio.sleep(0.2)
        raise AssertionError("never got a channel")

    async def reserved(self, pool: DeployedPool) -> tuple[str, int]:
        body = (await self.http.get(f"/v1/pools/{pool.pool_id}/liquidity")).json()
        return body["reserved"], body["active_reservations"]


@pytest.fixture(scope="module")
async def sponsored(temporal_env: Any, devnet: Any) -> AsyncIterator[Sponsored]:
    channels = [Keypair.random() for _ in range(CHANNELS)]
    await asyncio.gather(*(fund_account(devnet.rpc_url, c.public_key) for c in channels))
    async with running_saga_stack(
        temporal_env,
        devnet,
        funding_mode="sponsored",
        channel_secrets=",".join(c.secret for c in channels),
        ledger_seconds=LEDGER_INTERVAL,
        channel_wait_seconds=1.0,
    ) as stack:
        settings = stack.settings
        # a hold well past expires_at, so the expired-entry test submits while it stands
        settings.settlement_grace_seconds = 10
        settings.admin_token = f"admin-{uuid.uuid4().hex}"
        settings.jwt_secret = f"jwt-{uuid.uuid4().hex}{uuid.uuid4().hex}"
        settings.sep10_signing_secret = Keypair.random().secret
        port = free_port()
        settings.public_url = f"http://127.0.0.1:{port}"
        keys = ApiKeyStore(stack.redis, prefix=settings.ledger_prefix)
        _, full_key = await keys.create(
            "tests: sponsored", SCOPES, rate_per_minute=1_000_000, max_unsigned=1_000_000
        )
        server = uvicorn.Server(
            uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
        )
        task = asyncio.create_task(server.serve(), name="sponsored-api")
        for _ in range(200):
            if server.started or task.done():
                break
            await asyncio.sleep(0.05)
        assert server.started
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            timeout=30,
            headers={"Authorization": f"Bearer {full_key}"},
        ) as http:
            yield Sponsored(http, stack, channels, devnet)
        server.should_exit = True
        await asyncio.wait_for(task, timeout=15)


async def test_borrower_signs_the_entry_and_the_loan_funds(sponsored: Sponsored) -> None:
    pool = await sponsored.pool(1_000)
    borrower = await sponsored.borrower(pool)
    created = await sponsored.open(pool, borrower)
    funding = created["funding"]
    assert funding["mode"] == "sponsored"
    assert (funding["xdr"], funding["tx_hash"]) == ("", "")
    entry = sx.SorobanAuthorizationEntry.from_xdr(funding["auth_entry"])
    creds = entry.credentials.address
    assert creds is not None and creds.signature.type == sx.SCValType.SCV_VOID  # unsigned
    assert creds.signature_expiration_ledger.uint32 == funding["valid_until_ledger"]
    latest = await sponsored.stack.chain.latest_ledger()
    # the ledgers that close before expires_at at the nominal rate, less one: counted from the
    # simulation's ledger, whose close time (whole seconds) is at most ~2 s before now
    left = (funding["expires_at"] - time.time() + 2) / LEDGER_INTERVAL
    assert latest < funding["valid_until_ledger"] <= latest + left - 1
    resp = await sponsored.submit(created["loan_id"], sponsored.sign(created, borrower))
    assert resp.status_code == 202, resp.text
    tx_hash = resp.json()["funding"]["tx_hash"]
    assert len(tx_hash) == 64
    view = await wait_state(sponsored.http, created["loan_id"], {"funded", "failed"})
    assert view["state"] == "funded", view
    status = await sponsored.stack.chain.transaction(tx_hash)
    assert status.status == "success"
    # the channel account was the source and paid the fee; the borrower still has no XLM
    assert await _xlm(sponsored, borrower.public_key) == 0
    # the same entry again: the same answer, nothing sent twice
    again = await sponsored.submit(created["loan_id"], sponsored.sign(created, borrower))
    assert again.status_code == 202 and again.json()["funding"]["tx_hash"] == tx_hash
    assert await sponsored.reserved(pool) == ("0", 0)


async def _xlm(sponsored: Sponsored, account: str) -> int:
    ledger_key = sx.LedgerKey(
        sx.LedgerEntryType.ACCOUNT,
        account=sx.LedgerKeyAccount(Keypair.from_public_key(account).xdr_account_id()),
    )
    found = await devnet_call(
        sponsored.devnet.rpc_url, "getLedgerEntries", {"keys": [ledger_key.to_xdr()]}
    )
    data = sx.LedgerEntryData.from_xdr(found["entries"][0]["xdr"])
    assert data.account is not None
    return int(data.account.balance.int64)


async def test_two_concurrent_loans_of_one_borrower_both_fund(sponsored: Sponsored) -> None:
    pool = await sponsored.pool(1_000)
    borrower = await sponsored.borrower(pool)
    first, second = await asyncio.gather(
        sponsored.open(pool, borrower), sponsored.open(pool, borrower)
    )
    assert first["funding"]["auth_entry"] != second["funding"]["auth_entry"]  # own nonces
    responses = await asyncio.gather(
        sponsored.submit(first["loan_id"], sponsored.sign(first, borrower)),
        sponsored.submit(second["loan_id"], sponsored.sign(second, borrower)),
    )
    assert [r.status_code for r in responses] == [202, 202], [r.text for r in responses]
    views = await asyncio.gather(
        *(wait_state(sponsored.http, c["loan_id"], {"funded", "failed"}) for c in (first, second))
    )
    assert [v["state"] for v in views] == ["funded", "funded"], views


async def _refused_and_released(
    sponsored: Sponsored,
    pool: DeployedPool,
    loan_id: str,
    resp: httpx.Response,
    status: int,
    code: str,
) -> dict[str, Any]:
    details = assert_error(resp, status, code)
    view = await wait_state(sponsored.http, loan_id, {"cancelled", "failed", "expired", "funded"})
    assert view["state"] == "cancelled", view
    assert await sponsored.reserved(pool) == ("0", 0)
    return details


async def test_foreign_signed_and_tampered_entries_are_refused_and_released(
    sponsored: Sponsored,
) -> None:
    pool = await sponsored.pool(1_000)
    borrower = await sponsored.borrower(pool)
    created = await sponsored.open(pool, borrower)
    foreign = sponsored.sign(created, Keypair.random())
    resp = await sponsored.submit(created["loan_id"], foreign)
    details = await _refused_and_released(
        sponsored, pool, created["loan_id"], resp, 400, "auth_entry_mismatch"
    )
    assert details == {"reason": "not_signed_by_borrower", "released": True}

    # tampered: the borrower signed an entry for a bigger amount than offered
    created = await sponsored.open(pool, borrower)
    entry = sx.SorobanAuthorizationEntry.from_xdr(created["funding"]["auth_entry"])
    fn = entry.root_invocation.function.contract_fn
    assert fn is not None
    fn.args[2] = sx.SCVal.from_xdr(fn.args[2].to_xdr())
    assert fn.args[2].i128 is not None
    fn.args[2].i128.lo = sx.Uint64(fn.args[2].i128.lo.uint64 * 2)
    tampered = authorize_entry(
        entry, borrower, created["funding"]["valid_until_ledger"], sponsored.devnet.passphrase
    ).to_xdr()
    resp = await sponsored.submit(created["loan_id"], tampered)
    details = await _refused_and_released(
        sponsored, pool, created["loan_id"], resp, 400, "auth_entry_mismatch"
    )
    assert details["reason"] == "tampered"


async def test_an_entry_replayed_onto_another_loan_is_refused(sponsored: Sponsored) -> None:
    """Loan A's signed entry (already used on chain) sent for loan B: not B's offer."""
    pool = await sponsored.pool(1_000)
    borrower = await sponsored.borrower(pool)
    a = await sponsored.open(pool, borrower)
    signed_a = sponsored.sign(a, borrower)
    assert (await sponsored.submit(a["loan_id"], signed_a)).status_code == 202
    assert (await wait_state(sponsored.http, a["loan_id"], {"funded", "failed"}))["state"] == (
        "funded"
    )
    b = await sponsored.open(pool, borrower)
    resp = await sponsored.submit(b["loan_id"], signed_a)
    details = await _refused_and_released(
        sponsored, pool, b["loan_id"], resp, 400, "auth_entry_mismatch"
    )
    assert details["reason"] == "tampered"


async def test_an_expired_entry_is_refused_and_released(sponsored: Sponsored) -> None:
    """A short reservation: its entry is valid through a ledger that passes while the hold
    (expires_at + the settlement grace) still stands, so the API sees it expired."""
    pool = await sponsored.pool(1_000)
    borrower = await sponsored.borrower(pool)
    created = await sponsored.open(pool, borrower, ttl_seconds=5)
    until = created["funding"]["valid_until_ledger"]
    signed = sponsored.sign(created, borrower)
    for _ in range(200):
        if await sponsored.stack.chain.latest_ledger() >= until:
            break
        await asyncio.sleep(LEDGER_INTERVAL / 2)
    resp = await sponsored.submit(created["loan_id"], signed)
    details = await _refused_and_released(
        sponsored, pool, created["loan_id"], resp, 409, "auth_entry_expired"
    )
    assert details["valid_until_ledger"] == until


async def test_twenty_borrowers_over_four_channels_all_fund(sponsored: Sponsored) -> None:
    """20 concurrent borrowers, 4 channel accounts: each submit waits for a channel (503 with
    Retry-After meanwhile), every loan funds, none fails on chain for liquidity, and the pool
    locked exactly what was reserved."""
    pool = await sponsored.pool(20 * 80)  # exactly the 20 loans' funded amounts
    borrowers = await asyncio.gather(*(sponsored.borrower(pool) for _ in range(20)))
    created = await asyncio.gather(*(sponsored.open(pool, b) for b in borrowers))
    # the 21st does not fit: refused at open, never on chain
    extra = await sponsored.borrower(pool)
    resp = await sponsored.http.post(
        "/v1/loans",
        json=loan_body(pool.pool_id, extra.public_key, Keypair.random().public_key),
        headers=key(),
    )
    assert_error(resp, 409, "insufficient_liquidity")
    responses = await asyncio.gather(
        *(
            sponsored.submit(c["loan_id"], sponsored.sign(c, b))
            for c, b in zip(created, borrowers, strict=True)
        )
    )
    assert [r.status_code for r in responses] == [202] * 20, [r.text for r in responses]
    views = await asyncio.gather(
        *(
            wait_state(sponsored.http, c["loan_id"], {"funded", "failed"}, within=90)
            for c in created
        )
    )
    assert [v["state"] for v in views] == ["funded"] * 20, [v["failure_reason"] for v in views]
    hashes = [r.json()["funding"]["tx_hash"] for r in responses]
    statuses = await asyncio.gather(*(sponsored.stack.chain.transaction(h) for h in hashes))
    assert [s.status for s in statuses] == ["success"] * 20
    assert not [s for s in statuses if s.reason is not None]  # zero InsufficientLiquidity
    stats = await sponsored.stack.chain.pool_stats(pool.pool_id)
    assert stats.locked_liquidity == 20 * 80 * UNIT
    sources = set()
    per_tx_source = []
    for h in hashes:
        from stellar_sdk import TransactionEnvelope

        got = await sponsored.stack.chain._server.get_transaction(h)
        per_tx_source.append(
            TransactionEnvelope.from_xdr(
                got.envelope_xdr, sponsored.devnet.passphrase
            ).transaction.source.account_id
        )
        sources.add(
            TransactionEnvelope.from_xdr(
                got.envelope_xdr, sponsored.devnet.passphrase
            ).transaction.source.account_id
        )
    assert sources <= {c.public_key for c in sponsored.channels} and len(sources) > 1
    # one transaction in flight per channel: no channel has two in one ledger
    placed = [(source, st.ledger) for source, st in zip(per_tx_source, statuses, strict=True)]
    assert len(set(placed)) == 20, placed


async def test_a_channel_knocked_out_of_step_recovers(sponsored: Sponsored) -> None:
    pool = await sponsored.pool(1_000)
    for channel in sponsored.channels:  # every channel's sequence moves under the pool
        current = await sponsored.stack.chain.account_sequence(channel.public_key)
        await devnet_call(
            sponsored.devnet.rpc_url,
            "devnet_bumpSequence",
            {"account": channel.public_key, "sequence": current + 3},
        )
    borrower = await sponsored.borrower(pool)
    created = await sponsored.open(pool, borrower)
    resp = await sponsored.submit(created["loan_id"], sponsored.sign(created, borrower))
    assert resp.status_code == 202, resp.text
    view = await wait_state(sponsored.http, created["loan_id"], {"funded", "failed"})
    assert view["state"] == "funded", view


async def test_submit_body_must_match_the_mode(sponsored: Sponsored) -> None:
    pool = await sponsored.pool(1_000)
    borrower = await sponsored.borrower(pool)
    created = await sponsored.open(pool, borrower)
    resp = await sponsored.http.post(
        f"/v1/loans/{created['loan_id']}/submit", json={"signed_xdr": "AAAA"}
    )
    assert_error(resp, 400, "wrong_funding_mode")
    resp = await sponsored.http.post(f"/v1/loans/{created['loan_id']}/submit", json={})
    assert resp.status_code == 422, resp.text
    resp = await sponsored.submit(created["loan_id"], "not base64!")
    assert assert_error(resp, 400, "auth_entry_mismatch")["reason"] == "malformed"


async def test_stepfi_refusals_hold_in_sponsored_mode(sponsored: Sponsored) -> None:
    """The offer's simulation runs StepFi's checks as the source-account build does: a borrower
    below the reputation threshold is refused at open with the typed reason, no entry to sign
    is handed out and nothing stays reserved."""
    pool = await sponsored.pool(1_000)
    borrower = await sponsored.borrower(pool)
    await devnet_call(
        sponsored.devnet.rpc_url,
        "devnet_setReputation",
        {"user": borrower.public_key, "score": 10},
    )
    resp = await sponsored.http.post(
        "/v1/loans",
        json=loan_body(pool.pool_id, borrower.public_key, Keypair.random().public_key),
        headers=key(),
    )
    details = assert_error(resp, 422, "credit_declined")
    assert details["reason"] == "insufficient_reputation", details
    assert "auth_entry" not in resp.text
    assert await sponsored.reserved(pool) == ("0", 0)


async def test_try_again_later_is_waited_out(sponsored: Sponsored) -> None:
    """The RPC answers TRY_AGAIN_LATER twice (a congested queue): the submit backs off, retries
    and the loan funds; the borrower sees only the 202."""
    pool = await sponsored.pool(1_000)
    borrower = await sponsored.borrower(pool)
    created = await sponsored.open(pool, borrower)
    signed = sponsored.sign(created, borrower)
    await devnet_call(sponsored.devnet.rpc_url, "devnet_tryAgainLater", {"count": 2})
    try:
        resp = await sponsored.submit(created["loan_id"], signed)
    finally:
        await devnet_call(sponsored.devnet.rpc_url, "devnet_tryAgainLater", {"count": 0})
    assert resp.status_code == 202, resp.text
    view = await wait_state(sponsored.http, created["loan_id"], {"funded", "failed"})
    assert view["state"] == "funded", view


async def test_no_free_channel_is_503_and_the_reservation_stays(sponsored: Sponsored) -> None:
    """Every channel leased (as by four transactions in flight): the submit answers 503
    channels_busy with Retry-After, nothing is sent and the loan keeps its reservation; once a
    channel is free the same signed entry funds the loan."""
    from channels.pool import ChannelPool

    pool = await sponsored.pool(1_000)
    borrower = await sponsored.borrower(pool)
    created = await sponsored.open(pool, borrower)
    signed = sponsored.sign(created, borrower)
    holder = ChannelPool(
        sponsored.stack.redis,
        sponsored.stack.chain,
        [c.secret for c in sponsored.channels],
        prefix=sponsored.stack.settings.ledger_prefix,
        wait_seconds=10,
    )
    max_time = int(time.time()) + 60
    leases = [await holder.acquire(max_time=max_time) for _ in sponsored.channels]
    try:
        resp = await sponsored.http.post(
            f"/v1/loans/{created['loan_id']}/submit", json={"signed_auth_entry": signed}
        )
        assert_error(resp, 503, "channels_busy")
        assert int(resp.headers["Retry-After"]) >= 1
        view = (await sponsored.http.get(f"/v1/loans/{created['loan_id']}")).json()
        assert view["state"] == "reserved" and view["funding"]["tx_hash"] == "", view
        assert await sponsored.reserved(pool) == ("80", 1)
    finally:
        for lease in leases:
            await holder.release(lease)
    resp = await sponsored.submit(created["loan_id"], signed)
    assert resp.status_code == 202, resp.text
    view = await wait_state(sponsored.http, created["loan_id"], {"funded", "failed"})
    assert view["state"] == "funded", view


async def test_a_refusal_only_the_chain_can_tell_releases_the_reservation(
    sponsored: Sponsored,
) -> None:
    """The entry is the offer, signed by the borrower, but the chain's state changed since the
    open (the borrower's score fell below StepFi's threshold): the enforcing simulation at
    submit refuses, the API answers 422 tx_rejected with the typed reason and releases."""
    pool = await sponsored.pool(1_000)
    borrower = await sponsored.borrower(pool)
    created = await sponsored.open(pool, borrower)
    signed = sponsored.sign(created, borrower)
    await devnet_call(
        sponsored.devnet.rpc_url,
        "devnet_setReputation",
        {"user": borrower.public_key, "score": 10},
    )
    resp = await sponsored.submit(created["loan_id"], signed)
    details = await _refused_and_released(
        sponsored, pool, created["loan_id"], resp, 422, "tx_rejected"
    )
    assert details["reason"] == "insufficient_reputation", details
