"""What routes need, built once per process in the app's lifespan and handed out by FastAPI
dependencies: settings, the Temporal client, the reservation ledger, the chain client, and the
authentication services (API keys, SEP-10, session tokens; the dependencies are in api/auth/).

Importing this module connects nowhere; the Temporal client is connected lazily (and retried on
the next request) so the API starts, and /readyz can say what is missing, while Temporal is down."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request
from temporalio.client import Client

from api.auth.admission import Admission
from api.auth.deps import OperatorDep
from api.auth.keys import ApiKeyStore
from api.auth.sep10 import Sep10
from api.auth.tokens import SessionTokens
from api.errors import ApiError
from api.squatting import SquattingGuard
from chain.client import ChainClient
from channels.pool import ChannelPool
from core.settings import Settings
from liquidity.connection import RedisClient
from liquidity.ledger import Ledger
from liquidity.tx_index import TxIndex
from reconcile.reconciler import ReportStore
from runtime import clients


@dataclass
class Services:
    settings: Settings
    redis: RedisClient
    ledger: Ledger
    chain: ChainClient
    reports: ReportStore
    keys: ApiKeyStore
    sep10: Sep10
    tokens: SessionTokens
    squatting: SquattingGuard
    tx_index: TxIndex | None = None
    channels: ChannelPool | None = None  # sponsored funding's channel accounts
    _temporal: Client | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @classmethod
    def build(cls, settings: Settings) -> Services:
        built = clients.Clients.open(settings)
        endpoint = web_auth_endpoint(settings)
        sep10 = Sep10(
            built.redis,
            prefix=settings.ledger_prefix,
            signing_secret=settings.sep10_signing_secret,
            home_domain=settings.sep10_home_domain,
            web_auth_domain=urlsplit(endpoint).netloc,
            network_passphrase=settings.network_passphrase,
            challenge_ttl_seconds=settings.sep10_challenge_ttl_seconds,
        )
        tokens = SessionTokens(
            settings.jwt_secret, issuer=endpoint, ttl_seconds=settings.jwt_ttl_seconds
        )
        return cls(
            settings=settings,
            redis=built.redis,
            ledger=built.ledger,
            chain=built.chain,
            reports=built.reports,
            keys=ApiKeyStore.of(settings, built.redis),
            sep10=sep10,
            tokens=tokens,
            squatting=SquattingGuard(
                Admission(built.redis, prefix=settings.ledger_prefix), settings
            ),
            tx_index=built.tx_index,
            channels=clients.channel_pool(settings, built.redis, built.chain),
        )

    async def temporal(self) -> Client:
        if self._temporal is not None:
            return self._temporal
        async with self._lock:
            if self._temporal is None:
                try:
                    self._temporal = await asyncio.wait_for(
                        clients.temporal_client(self.settings), timeout=5
                    )
                except Exception as exc:
                    raise ApiError(
                        503,
                        "temporal_unavailable",
                        "the saga engine (Temporal) is not reachable",
                        {"address": self.settings.temporal_address},
                        {"Retry-After": "5"},
                    ) from exc
            return self._temporal

    async def close(self) -> None:
        await self.redis.aclose()
        await self.chain.close()


def public_url(settings: Settings) -> str:
    return (settings.public_url or f"http://{settings.api_host}:{settings.api_port}").rstrip("/")


def web_auth_endpoint(settings: Settings) -> str:
    """SEP-10's WEB_AUTH_ENDPOINT; its host is the challenge's web_auth_domain."""
    return f"{public_url(settings)}/v1/auth"


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


async def temporal_client(svc: Annotated[Services, Depends(services)]) -> Client:
    return await svc.temporal()


def known_pool(svc: Services, pool_id: str) -> str:
    """The creditline of a configured pool; 404 for a pool this deployment does not serve."""
    creditline = svc.settings.pools.get(pool_id)
    if creditline is None:
        raise ApiError(
            404, "pool_not_found", "no such pool is configured", {"pool_id": pool_id[:128]}
        )
    return creditline


ServicesDep = Annotated[Services, Depends(services)]
TemporalDep = Annotated[Client, Depends(temporal_client)]
AdminDep = OperatorDep  # the operator scope (API key or ADMIN_TOKEN): api/auth/deps.py
