"""SEP-10 Stellar Web Authentication, server side, on stellar-sdk's helpers
(`stellar_sdk.sep.stellar_web_authentication`): build a challenge signed by the server's key,
then verify the client's signature over it. This module adds only what the helpers leave to the
server: a challenge is single-use (its transaction hash is held in Redis until it expires and is
deleted by the one verification that consumes it) and expires (the helpers check time bounds;
the Redis entry expires with them).

Accounts are verified by their master key (`verify_challenge_transaction`): the devnet models
single-key accounts only; a multisig account would need `verify_challenge_transaction_threshold`
against the account's signers read from the network."""

from __future__ import annotations

from dataclasses import dataclass

from stellar_sdk import Keypair, StrKey, TransactionEnvelope
from stellar_sdk.sep.stellar_web_authentication import (
    build_challenge_transaction,
    read_challenge_transaction,
    verify_challenge_transaction,
)

from liquidity.connection import RedisClient


class ChallengeRefused(ValueError):
    """`reason` is a stable word for clients and tests; the message says what to do."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Verified:
    account: str
    challenge_hash: str


class Sep10:
    def __init__(
        self,
        redis: RedisClient,
        *,
        prefix: str,
        signing_secret: str,
        home_domain: str,
        web_auth_domain: str,
        network_passphrase: str,
        challenge_ttl_seconds: int,
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._secret = signing_secret
        self.signing_key = Keypair.from_secret(signing_secret).public_key
        self.home_domain = home_domain
        self.web_auth_domain = web_auth_domain
        self.network_passphrase = network_passphrase
        self.challenge_ttl_seconds = challenge_ttl_seconds

    def _key(self, challenge_hash: str) -> str:
        return f"{self._prefix}:auth:sep10:{challenge_hash}"

    def _hash(self, xdr: str) -> str:
        return TransactionEnvelope.from_xdr(xdr, self.network_passphrase).hash_hex()

    async def challenge(self, account: str) -> str:
        if not StrKey.is_valid_ed25519_public_key(account):
            raise ChallengeRefused(
                "invalid_account", "account must be a Stellar account id (G..., 56 characters)"
            )
        xdr = build_challenge_transaction(
            self._secret,
            account,
            self.home_domain,
            self.web_auth_domain,
            self.network_passphrase,
            timeout=self.challenge_ttl_seconds,
        )
        await self._redis.set(
            self._key(self._hash(xdr)), account, ex=self.challenge_ttl_seconds + 5
        )
        return xdr

    async def verify(self, signed_xdr: str) -> Verified:
        """The account that signed a challenge this server issued, consuming the challenge."""
        args = (self.signing_key, self.home_domain, self.web_auth_domain, self.network_passphrase)
        try:
            read = read_challenge_transaction(signed_xdr, *args)
        except Exception as exc:  # the helpers raise ValueError, XDR and SEP-10 errors alike
            raise ChallengeRefused("invalid_challenge", _why(exc)) from exc
        try:
            verify_challenge_transaction(signed_xdr, *args)
        except Exception as exc:
            raise ChallengeRefused("not_signed_by_account", _why(exc)) from exc
        challenge_hash = self._hash(signed_xdr)  # over the transaction, not its signatures
        consumed = await self._redis.delete(self._key(challenge_hash))
        if not consumed:
            raise ChallengeRefused(
                "challenge_used",
                "this challenge was already used or has expired; ask for a new one (GET /v1/auth)",
            )
        return Verified(read.client_account_id, challenge_hash)


def _why(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text[:300]
