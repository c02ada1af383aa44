"""SEP-10 end to end, as a wallet does it with stellar-sdk's client-side helpers: read
stellar.toml, get a challenge, check it is the server's, sign it, exchange it for a token; then
open the account's own loan, sign and submit it until it is funded, cancel another own loan, and
be refused on someone else's. Replayed, expired, tampered and foreign-signed challenges are
refused, and none of those attempts burns a good challenge."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import jwt
import pytest
from stellar_sdk import Keypair, TransactionEnvelope
from stellar_sdk.sep.stellar_web_authentication import build_challenge_transaction

from chain.envelope import sign_envelope
from core.money import UNIT
from tests.api.conftest import JWT_SECRET, SEP10_KEYPAIR
from tests.api.credentials import bearer, sep10_token, signed_challenge, stellar_toml
from tests.api.helpers import assert_error, key, loan_body


@pytest.fixture
async def pool(saga_stack: Any, deploy_pool: Any) -> Any:
    deployed = await deploy_pool(liquidity=1_000 * UNIT)
    await saga_stack.add_pool(deployed)
    return deployed


async def wait_state(
    http: httpx.AsyncClient, loan_id: str, token: str, states: set[str], within: float = 30
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        resp = await http.get(f"/v1/loans/{loan_id}", headers=bearer(token))
        assert resp.status_code == 200, resp.text
        if resp.json()["state"] in states:
            return dict(resp.json())
        assert time.monotonic() < deadline, resp.json()["state"]
        await asyncio.sleep(0.2)


async def test_stellar_toml_publishes_the_signing_key_and_endpoint(
    anon: httpx.AsyncClient, api_server: Any
) -> None:
    toml = await stellar_toml(anon)
    assert toml == {
        "NETWORK_PASSPHRASE": api_server.settings.network_passphrase,
        "SIGNING_KEY": SEP10_KEYPAIR.public_key,
        "WEB_AUTH_ENDPOINT": f"{api_server.base_url}/v1/auth",
    }
    resp = await anon.get("/.well-known/stellar.toml")
    assert resp.headers["access-control-allow-origin"] == "*"


async def test_a_wallet_authenticates_opens_submits_and_cancels_its_own_loans(
    anon: httpx.AsyncClient, api_server: Any, pool: Any, new_borrower: Any
) -> None:
    settings = api_server.settings
    me, someone, vendor = await asyncio.gather(
        new_borrower(pool), new_borrower(pool), new_borrower()
    )
    token = await sep10_token(anon, me, settings.sep10_home_domain)
    claims = jwt.decode(
        token, JWT_SECRET, algorithms=["HS256"], issuer=f"{api_server.base_url}/v1/auth"
    )
    assert claims["sub"] == me.public_key
    assert claims["exp"] - claims["iat"] == settings.jwt_ttl_seconds

    # Open my own loan with my token, sign it and submit it: funded.
    body = loan_body(pool.pool_id, me.public_key, vendor.public_key)
    opened = await anon.post("/v1/loans", json=body, headers={**key(), **bearer(token)})
    assert opened.status_code == 201, opened.text
    loan_id, funding = opened.json()["loan_id"], opened.json()["funding"]
    signed = sign_envelope(funding["xdr"], me.secret, settings.network_passphrase)
    sent = await anon.post(
        f"/v1/loans/{loan_id}/submit", json={"signed_xdr": signed}, headers=bearer(token)
    )
    assert sent.status_code == 202, sent.text
    assert (await wait_state(anon, loan_id, token, {"funded", "failed"}))["state"] == "funded"

    # A second loan of mine, cancelled with my token.
    again = await anon.post(
        "/v1/loans",
        json=loan_body(pool.pool_id, me.public_key, vendor.public_key, total="50", guarantee="10"),
        headers={**key(), **bearer(token)},
    )
    assert again.status_code == 201, again.text
    cancelled = await anon.post(
        f"/v1/loans/{again.json()['loan_id']}/cancel",
        json={"reason": "changed my mind"},
        headers=bearer(token),
    )
    assert cancelled.status_code == 202, cancelled.text
    await wait_state(anon, again.json()["loan_id"], token, {"cancelled"})

    # Someone else's loan (opened by the platform): my token gets 403 and learns nothing; the
    # answer is the very same as for a loan that does not exist.
    theirs = await anon.post(
        "/v1/loans",
        json=loan_body(pool.pool_id, someone.public_key, vendor.public_key),
        headers={**key(), **bearer(api_server.full_key)},
    )
    assert theirs.status_code == 201, theirs.text
    their_id = theirs.json()["loan_id"]
    refusals = [
        await anon.post(f"/v1/loans/{their_id}/cancel", headers=bearer(token)),
        await anon.get(f"/v1/loans/{their_id}", headers=bearer(token)),
        await anon.get("/v1/loans/00000000-0000-4000-8000-000000000000", headers=bearer(token)),
    ]
    for resp in refusals:
        assert_error(resp, 403, "forbidden")
        assert their_id not in resp.text and someone.public_key not in resp.text
    assert len({r.text for r in refusals}) == 1
    view = await anon.get(f"/v1/loans/{their_id}", headers=bearer(api_server.full_key))
    assert view.json()["state"] == "reserved"  # untouched

    # Nor may my token open a loan for someone else.
    other = await anon.post(
        "/v1/loans",
        json=loan_body(
            pool.pool_id, someone.public_key, vendor.public_key, total="60", guarantee="12"
        ),
        headers={**key(), **bearer(token)},
    )
    assert_error(other, 403, "forbidden")


async def test_wallet_opens_can_be_turned_off(
    anon: httpx.AsyncClient, api_server: Any, pool: Any, new_borrower: Any
) -> None:
    me, vendor = await new_borrower(pool), await new_borrower()
    token = await sep10_token(anon, me, api_server.settings.sep10_home_domain)
    api_server.settings.wallet_opens_enabled = False
    try:
        resp = await anon.post(
            "/v1/loans",
            headers={**key(), **bearer(token)},
            json=loan_body(pool.pool_id, me.public_key, vendor.public_key),
        )
    finally:
        api_server.settings.wallet_opens_enabled = True
    assert assert_error(resp, 403, "forbidden") == {"required_scope": "loans:write"}


async def test_replayed_challenge_is_refused(anon: httpx.AsyncClient, api_server: Any) -> None:
    me = Keypair.random()
    signed = await signed_challenge(anon, me, api_server.settings.sep10_home_domain)
    first, second = await asyncio.gather(
        *[anon.post("/v1/auth", json={"transaction": signed}) for _ in range(2)]
    )
    assert sorted([first.status_code, second.status_code]) == [200, 400]  # racing: one wins
    replay = await anon.post("/v1/auth", json={"transaction": signed})
    assert assert_error(replay, 400, "invalid_challenge") == {"reason": "challenge_used"}


async def test_expired_challenge_is_refused(anon: httpx.AsyncClient, api_server: Any) -> None:
    sep10 = api_server.app.state.services.sep10
    passphrase = api_server.settings.network_passphrase
    me = Keypair.random()
    sep10.challenge_ttl_seconds = 1
    try:
        resp = await anon.get("/v1/auth", params={"account": me.public_key})
    finally:
        sep10.challenge_ttl_seconds = api_server.settings.sep10_challenge_ttl_seconds
    # Signed without the wallet's own time check: it would refuse to sign it once expired.
    envelope = TransactionEnvelope.from_xdr(resp.json()["transaction"], passphrase)
    envelope.sign(me)
    await asyncio.sleep(2.2)
    resp = await anon.post("/v1/auth", json={"transaction": envelope.to_xdr()})
    details = assert_error(resp, 400, "invalid_challenge")
    assert details["reason"] == "invalid_challenge"
    assert "timebounds" in resp.json()["error"]["message"]


async def test_tampered_and_foreign_challenges_are_refused(
    anon: httpx.AsyncClient, api_server: Any
) -> None:
    settings = api_server.settings
    passphrase, home = settings.network_passphrase, settings.sep10_home_domain
    me, stranger = Keypair.random(), Keypair.random()
    challenge = (await anon.get("/v1/auth", params={"account": me.public_key})).json()[
        "transaction"
    ]

    # Tampered: a later max_time (the server's signature no longer covers the transaction).
    envelope = TransactionEnvelope.from_xdr(challenge, passphrase)
    assert envelope.transaction.preconditions and envelope.transaction.preconditions.time_bounds
    bounds = envelope.transaction.preconditions.time_bounds
    bounds.max_time += 3600
    envelope.sign(me)
    resp = await anon.post("/v1/auth", json={"transaction": envelope.to_xdr()})
    assert assert_error(resp, 400, "invalid_challenge")["reason"] == "invalid_challenge"

    # Signed by someone other than the account.
    envelope = TransactionEnvelope.from_xdr(challenge, passphrase)
    envelope.sign(stranger)
    resp = await anon.post("/v1/auth", json={"transaction": envelope.to_xdr()})
    assert assert_error(resp, 400, "invalid_challenge")["reason"] == "not_signed_by_account"

    # Issued by another server's key (a well-formed SEP-10 challenge, just not ours).
    foreign = build_challenge_transaction(
        Keypair.random().secret,
        me.public_key,
        home,
        f"127.0.0.1:{api_server.base_url.rsplit(':', 1)[1]}",
        passphrase,
    )
    envelope = TransactionEnvelope.from_xdr(foreign, passphrase)
    envelope.sign(me)
    resp = await anon.post("/v1/auth", json={"transaction": envelope.to_xdr()})
    assert assert_error(resp, 400, "invalid_challenge")["reason"] == "invalid_challenge"

    # Garbage and a bad account.
    assert_error(
        await anon.post("/v1/auth", json={"transaction": "AAAA"}), 400, "invalid_challenge"
    )
    assert_error(
        await anon.get("/v1/auth", params={"account": "GNOTANACCOUNT"}), 400, "invalid_account"
    )

    # None of the failed attempts consumed the real challenge: signed properly, it still works.
    envelope = TransactionEnvelope.from_xdr(challenge, passphrase)
    envelope.sign(me)
    ok = await anon.post("/v1/auth", json={"transaction": envelope.to_xdr()})
    assert ok.status_code == 200, ok.text
