"""SEP-10 session tokens: short-lived HS256 JWTs (PyJWT) whose `sub` is the Stellar account.

Claims as SEP-10 describes them: `iss` (the WEB_AUTH_ENDPOINT), `sub`, `iat`, `exp`, `jti` (the
challenge transaction's hash). Verification pins the algorithm and requires every claim, so a
token signed with another key, with `alg: none`, expired or issued by another service is refused."""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt
from stellar_sdk import StrKey

ALGORITHM = "HS256"


class InvalidToken(ValueError):
    """Why a token was refused: safe to show to the caller."""


@dataclass(frozen=True)
class SessionTokens:
    secret: str
    issuer: str
    ttl_seconds: int

    def issue(self, account: str, jti: str) -> tuple[str, int]:
        """The token and its expiry (Unix seconds)."""
        now = int(time.time())
        exp = now + self.ttl_seconds
        claims = {"iss": self.issuer, "sub": account, "iat": now, "exp": exp, "jti": jti}
        return jwt.encode(claims, self.secret, algorithm=ALGORITHM), exp

    def verify(self, token: str) -> str:
        """The account (`sub`) of a valid token."""
        try:
            claims = jwt.decode(
                token,
                self.secret,
                algorithms=[ALGORITHM],
                issuer=self.issuer,
                options={"require": ["iss", "sub", "iat", "exp", "jti"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise InvalidToken("the token has expired; authenticate again (GET /v1/auth)") from exc
        except jwt.InvalidTokenError as exc:
            raise InvalidToken("the token is not valid") from exc
        sub = claims.get("sub")
        if not isinstance(sub, str) or not StrKey.is_valid_ed25519_public_key(sub):
            raise InvalidToken("the token names no Stellar account")
        return sub
