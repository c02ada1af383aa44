"""What routes need, built once per process in the app's lifespan and handed out by FastAPI
dependencies: settings, the Temporal client, the reservation ledger, the chain client, admin auth.

Importing this module connects nowhere; the Temporal client is connected lazily (and retried on
the next request) so the API starts, and /readyz can say what is missing, while Temporal is down."""

from __future__ import annotations

import asyncio
import hmac
from dataclasses import dataclass, field
from typing import Annotated

import redis.asyncio as aioredis
from fastapi import Depends, Header, Request
from temporalio.client import Client

from api.errors import ApiError
from chain.client import ChainClient
from core.settings import Settings
from liquidity.ledger import Ledger
from reconcile.reconciler import ReportStore
from runtime import clients


@dataclass
class Services:
    settings: Settings
    redis: aioredis.Redis
    ledger: Ledger
    chain: ChainClient
    reports: ReportStore
    _temporal: Client | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @classmethod
    def build(cls, settings: Settings) -> Services:
        built = clients.Clients.open(settings)
        return cls(settings=settings, redis=built.redis, ledger=built.ledger, chain=built.chain,
                   reports=built.reports)

    async def temporal(self) -> Client:
        if self._temporal is not None:
            return self._temporal
        async with self._lock:
            if self._temporal is None:
                try:
                    self._temporal = await asyncio.wait_for(
                        clients.temporal_client(self.settings), timeout=5)
                except Exception as exc:
                    raise ApiError(503, "temporal_unavailable",
                                   "the saga engine (Temporal) is not reachable",
                                   {"address": self.settings.temporal_address},
                                   {"Retry-After": "5"}) from exc
            return self._temporal

    async def close(self) -> None:
        await self.redis.aclose()
        await self.chain.close()


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


async def temporal_client(svc: Annotated[Services, Depends(services)]) -> Client:
    return await svc.temporal()


def require_admin(
    svc: Annotated[Services, Depends(services)],
    authorization: Annotated[str | None, Header()] = None,
) -> None:
    """401 when no bearer token is presented, 403 when it is not the admin token."""
    challenge = {"WWW-Authenticate": "Bearer"}
    if not authorization:
        raise ApiError(401, "unauthorized", "admin route: send Authorization: Bearer <token>",
                       headers=challenge)
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "admin route: send Authorization: Bearer <token>",
                       headers=challenge)
    expected = svc.settings.admin_token.encode()
    if not hmac.compare_digest(token.strip().encode(), expected):
        raise ApiError(403, "forbidden", "this token may not use admin routes")


def known_pool(svc: Services, pool_id: str) -> str:
    """The creditline of a configured pool; 404 for a pool this deployment does not serve."""
    creditline = svc.settings.pools.get(pool_id)
    if creditline is None:
        raise ApiError(404, "pool_not_found", "no such pool is configured",
                       {"pool_id": pool_id[:128]})
    return creditline


ServicesDep = Annotated[Services, Depends(services)]
TemporalDep = Annotated[Client, Depends(temporal_client)]
AdminDep = Annotated[None, Depends(require_admin)]
