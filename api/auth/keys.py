"""API keys in Redis: an id, a secret shown once, scopes, revocation.

A key is sent as `lsk_<id>_<secret>`. Only SHA-256 of the secret is stored: the secret is 32
random bytes, so a plain digest cannot be brute-forced and needs no slow KDF (which would cost
every request); digests are compared with `hmac.compare_digest`. Every request reads the key's
record from Redis (one HGETALL, no cache), so a revocation is seen by every API process at once.

Layout (under the deployment's prefix): `<p>:auth:key:<id>` a hash (name, scopes, digest,
created_ms, revoked_ms, rate_per_minute, max_unsigned), `<p>:auth:keys` the set of ids."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

from api.auth.principal import SCOPES, Principal
from core.settings import Settings
from liquidity.connection import RedisClient

TOKEN_PREFIX = "lsk_"
_TOKEN = re.compile(r"^lsk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")


class UnknownScope(ValueError):
    pass


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    scopes: tuple[str, ...]
    created_ms: int
    revoked_ms: int | None = None
    rate_per_minute: int | None = None
    max_unsigned: int | None = None

    @property
    def active(self) -> bool:
        return self.revoked_ms is None

    def principal(self) -> Principal:
        return Principal(
            "key",
            self.id,
            frozenset(self.scopes),
            rate_per_minute=self.rate_per_minute,
            max_unsigned=self.max_unsigned,
        )


def looks_like_key(token: str) -> bool:
    return token.startswith(TOKEN_PREFIX)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _opt_int(value: str | None) -> int | None:
    return int(value) if value else None


def check_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    out = tuple(dict.fromkeys(s.strip() for s in scopes if s.strip()))
    unknown = [s for s in out if s not in SCOPES]
    if unknown:
        raise UnknownScope(f"unknown scope(s) {unknown}; known: {list(SCOPES)}")
    if not out:
        raise UnknownScope(f"a key needs at least one scope of {list(SCOPES)}")
    return out


class ApiKeyStore:
    def __init__(self, redis: RedisClient, *, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix

    @classmethod
    def of(cls, settings: Settings, redis: RedisClient) -> ApiKeyStore:
        """The store every process of a deployment shares (the ledger's Redis and prefix)."""
        return cls(redis, prefix=settings.ledger_prefix)

    def _key(self, key_id: str) -> str:
        return f"{self._prefix}:auth:key:{key_id}"

    @property
    def _index(self) -> str:
        return f"{self._prefix}:auth:keys"

    async def create(
        self,
        name: str,
        scopes: Iterable[str],
        *,
        rate_per_minute: int | None = None,
        max_unsigned: int | None = None,
    ) -> tuple[ApiKey, str]:
        """The new key and its token; the token exists only in this return value."""
        checked = check_scopes(scopes)
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        record = ApiKey(
            key_id,
            name,
            checked,
            int(time.time() * 1000),
            rate_per_minute=rate_per_minute,
            max_unsigned=max_unsigned,
        )
        fields: dict[Any, Any] = {
            "name": name,
            "scopes": " ".join(checked),
            "digest": _digest(secret),
            "created_ms": str(record.created_ms),
            "revoked_ms": "",
            "rate_per_minute": "" if rate_per_minute is None else str(rate_per_minute),
            "max_unsigned": "" if max_unsigned is None else str(max_unsigned),
        }
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(self._key(key_id), mapping=fields)
            pipe.sadd(self._index, key_id)
            await pipe.execute()
        return record, f"{TOKEN_PREFIX}{key_id}_{secret}"

    @staticmethod
    def _record(key_id: str, raw: dict[str, str]) -> ApiKey:
        return ApiKey(
            key_id,
            raw.get("name", ""),
            tuple(raw.get("scopes", "").split()),
            int(raw.get("created_ms") or 0),
            _opt_int(raw.get("revoked_ms")),
            _opt_int(raw.get("rate_per_minute")),
            _opt_int(raw.get("max_unsigned")),
        )

    async def authenticate(self, token: str) -> ApiKey | None:
        """The active key this token names, or None (malformed, unknown, wrong secret, revoked).
        The digest is compared even for an unknown id, so timing tells nothing either way."""
        match = _TOKEN.match(token)
        if match is None:
            return None
        key_id, secret = match.groups()
        raw = await self._hash(key_id)
        stored = raw.get("digest", "0" * 64)
        if not hmac.compare_digest(_digest(secret), stored) or not raw:
            return None
        record = self._record(key_id, raw)
        return record if record.active else None

    async def _hash(self, key_id: str) -> dict[str, str]:
        return cast(dict[str, str], await self._redis.hgetall(self._key(key_id)))

    async def get(self, key_id: str) -> ApiKey | None:
        raw = await self._hash(key_id)
        return self._record(key_id, raw) if raw else None

    async def list(self) -> list[ApiKey]:
        ids = sorted(cast(set[str], await self._redis.smembers(self._index)))
        keys = [await self.get(i) for i in ids]
        return sorted((k for k in keys if k is not None), key=lambda k: k.created_ms)

    async def revoke(self, key_id: str) -> ApiKey | None:
        """Marks the key revoked (kept for the record); None if there is no such key. Revoking
        twice keeps the first time."""
        if not re.fullmatch(r"[0-9a-f]{16}", key_id):
            return None
        key = self._key(key_id)
        if not await self._redis.exists(key):
            return None
        if not await self._redis.hget(key, "revoked_ms"):
            await self._redis.hset(key, "revoked_ms", str(int(time.time() * 1000)))
        return await self.get(key_id)
