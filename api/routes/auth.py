"""SEP-10 Stellar Web Authentication (GET /v1/auth for a challenge, POST /v1/auth with it
signed for a session token) and the SEP-1 `/.well-known/stellar.toml` that tells a wallet where
to authenticate and which key signs the challenges. Public routes: this is how one gets a
credential."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from api.auth.sep10 import ChallengeRefused
from api.deps import ServicesDep, web_auth_endpoint
from api.errors import ApiError
from api.schemas import ErrorOut

router = APIRouter(tags=["auth"])

ERRORS: dict[int | str, dict[str, Any]] = {s: {"model": ErrorOut} for s in (400, 422)}
MAX_XDR = 8_192  # a challenge is two or three manage_data operations: ~1 KB signed


class ChallengeOut(BaseModel):
    transaction: str = Field(description="the challenge (base64 XDR), signed by SIGNING_KEY")
    network_passphrase: str


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    transaction: str = Field(
        min_length=1, max_length=MAX_XDR, description="the challenge, signed by the account"
    )


class TokenOut(BaseModel):
    token: str = Field(
        description="a short-lived JWT; `sub` is the account. Send it as "
        "Authorization: Bearer <token>"
    )


def _refused(exc: ChallengeRefused) -> ApiError:
    code = "invalid_account" if exc.reason == "invalid_account" else "invalid_challenge"
    return ApiError(400, code, exc.message, {"reason": exc.reason})


@router.get(
    "/v1/auth",
    response_model=ChallengeOut,
    responses=ERRORS,
    summary="SEP-10: a challenge transaction for the account to sign",
)
async def challenge(
    svc: ServicesDep,
    account: Annotated[
        str, Query(min_length=1, max_length=69, description="the Stellar account (G...)")
    ],
) -> ChallengeOut:
    try:
        xdr = await svc.sep10.challenge(account)
    except ChallengeRefused as exc:
        raise _refused(exc) from exc
    return ChallengeOut(transaction=xdr, network_passphrase=svc.settings.network_passphrase)


@router.post(
    "/v1/auth",
    response_model=TokenOut,
    responses=ERRORS,
    summary="SEP-10: exchange the signed challenge for a session token",
)
async def token(svc: ServicesDep, body: TokenIn) -> TokenOut:
    try:
        verified = await svc.sep10.verify(body.transaction)
    except ChallengeRefused as exc:
        raise _refused(exc) from exc
    jwt, _ = svc.tokens.issue(verified.account, verified.challenge_hash)
    return TokenOut(token=jwt)


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@router.get(
    "/.well-known/stellar.toml",
    response_class=PlainTextResponse,
    summary="SEP-1: SIGNING_KEY, WEB_AUTH_ENDPOINT, NETWORK_PASSPHRASE",
)
async def stellar_toml(svc: ServicesDep) -> PlainTextResponse:
    lines = [
        f"NETWORK_PASSPHRASE={_toml_string(svc.settings.network_passphrase)}",
        f"SIGNING_KEY={_toml_string(svc.sep10.signing_key)}",
        f"WEB_AUTH_ENDPOINT={_toml_string(web_auth_endpoint(svc.settings))}",
    ]
    # SEP-1: served with CORS open to every origin, so browser wallets can read it.
    return PlainTextResponse(
        "\n".join(lines) + "\n",
        media_type="text/plain",
        headers={"Access-Control-Allow-Origin": "*"},
    )
