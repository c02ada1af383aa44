"""The FastAPI application. `create_app(settings)` builds one (tests pass their own Settings);
the module-level `app` is what `uvicorn api.app:app` serves. Building an app connects nowhere:
clients are made in the lifespan, so importing this module is free of side effects."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import REGISTRY

from api.auth.startup import check_secrets
from api.body_limit import install_body_limit
from api.deps import Services
from api.errors import UnexpectedErrorMiddleware, install_error_handlers
from api.metrics import ObservabilityMiddleware, PoolCollector
from api.routes import admin, auth, dashboard, health, keys, loans, pools, reconciliation
from core.settings import Settings, get_settings

DESCRIPTION = """\
Reserves Soroban pool liquidity atomically before a borrower gets the funding transaction to
sign, so concurrent loans can never over-commit a pool. Amounts are decimal strings (7 decimals).
Errors share one shape: `{"error": {"code", "message", "details"}}`.

Callers authenticate with `Authorization: Bearer <credential>`: a platform or operator API key
(scopes `loans:write`, `loans:read`, `pools:read`, `operator`), or a borrower wallet's SEP-10
token (`GET`/`POST /v1/auth`), which acts only on the account's own loans. 401 `unauthenticated`
means no valid credential; 403 `forbidden` names the missing scope."""


def create_app(settings: Settings | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        served = settings or get_settings()
        check_secrets(served)  # refuses to start with guessable secrets (not on the dev stack)
        services = Services.build(served)
        app.state.services = services
        # Pool gauges are read from the ledger when this process's metrics endpoint is scraped.
        collector = PoolCollector(
            ledger=services.ledger,
            settings=services.settings,
            loop=asyncio.get_running_loop(),
            reports=services.reports,
        )
        REGISTRY.register(collector)
        try:
            yield
        finally:
            REGISTRY.unregister(collector)
            await services.close()

    app = FastAPI(
        title="Liquidity reservation saga",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    install_error_handlers(app)
    # add_middleware wraps: the last added runs first. Observability outermost (request id, log
    # line, metrics of every answer), then the body limit, then the catch-all 500.
    app.add_middleware(UnexpectedErrorMiddleware)
    install_body_limit(app, settings)
    app.add_middleware(ObservabilityMiddleware)
    for module in (loans, pools, admin, keys, auth, health):
        app.include_router(module.router)
    app.include_router(reconciliation.pools_router)
    app.include_router(reconciliation.admin_router)
    app.include_router(dashboard.data_router)
    app.include_router(dashboard.page_router)
    return app


app = create_app()
