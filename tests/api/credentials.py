"""Credentials for tests, obtained the way a real caller obtains them: SEP-10 with
stellar-sdk's client-side helpers (read the challenge and check it is the server's, sign it,
exchange it), API keys through the key store, and forged tokens for the refusals."""

from __future__ import annotations

import re
import time
import tomllib
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
from stellar_sdk import Keypair, TransactionEnvelope
from stellar_sdk.sep.stellar_web_authentication import read_challenge_transaction


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def key_secret(token: str) -> str:
    """The secret part of an API key `lsk_<id>_<secret>`. Not `rsplit("_")`: the secret is
    url-safe base64 and holds a `_` about half the time, and the tail after it can be a
    character or two (or empty) that any listing contains by chance."""
    match = re.fullmatch(r"lsk_[0-9a-f]{16}_([A-Za-z0-9_-]{43})", token)
    assert match, token
    return match[1]


async def stellar_toml(http: httpx.AsyncClient) -> dict[str, Any]:
    resp = await http.get("/.well-known/stellar.toml")
    assert resp.status_code == 200, resp.text
    return tomllib.loads(resp.text)


async def signed_challenge(
    http: httpx.AsyncClient, keypair: Keypair, home_domain: str, signer: Keypair | None = None
) -> str:
    """A challenge for `keypair`'s account, checked as a wallet checks it (signed by the
    stellar.toml SIGNING_KEY, for this home and web-auth domain), then signed by `signer`
    (the account itself unless told otherwise)."""
    toml = await stellar_toml(http)
    resp = await http.get("/v1/auth", params={"account": keypair.public_key})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["network_passphrase"] == toml["NETWORK_PASSPHRASE"]
    read = read_challenge_transaction(
        body["transaction"],
        toml["SIGNING_KEY"],
        home_domain,
        urlsplit(toml["WEB_AUTH_ENDPOINT"]).netloc,
        toml["NETWORK_PASSPHRASE"],
    )
    assert read.client_account_id == keypair.public_key
    envelope = TransactionEnvelope.from_xdr(body["transaction"], toml["NETWORK_PASSPHRASE"])
    envelope.sign(signer or keypair)
    return envelope.to_xdr()


async def sep10_token(http: httpx.AsyncClient, keypair: Keypair, home_domain: str) -> str:
    """The whole SEP-10 flow for one account: its session token."""
    signed = await signed_challenge(http, keypair, home_domain)
    resp = await http.post("/v1/auth", json={"transaction": signed})
    assert resp.status_code == 200, resp.text
    token: str = resp.json()["token"]
    return token


def forge_jwt(secret: str, issuer: str, account: str, *, expires_in: int = 300) -> str:
    now = int(time.time())
    claims = {
        "iss": issuer,
        "sub": account,
        "iat": now - 600,
        "exp": now + expires_in,
        "jti": "forged",
    }
    return jwt.encode(claims, secret, algorithm="HS256")
