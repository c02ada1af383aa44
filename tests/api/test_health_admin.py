"""Liveness/readiness against the real components, and the operator credential gate."""

from __future__ import annotations

import httpx
import pytest

from tests.api.conftest import ADMIN_TOKEN
from tests.api.helpers import assert_error


async def test_healthz_and_readyz_report_every_component(http: httpx.AsyncClient) -> None:
    assert (await http.get("/healthz")).json() == {"status": "ok", "checks": {}}
    ready = await http.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json() == {
        "status": "ok",
        "checks": {"temporal": "ok", "worker": "ok", "redis": "ok", "chain": "ok"},
    }


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "unauthenticated"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, 401, "unauthenticated"),
        ({"Authorization": "Bearer"}, 401, "unauthenticated"),
        ({"Authorization": "Bearer wrong-token"}, 401, "unauthenticated"),
        ({"Authorization": f"Bearer {ADMIN_TOKEN}x"}, 401, "unauthenticated"),
    ],
)
@pytest.mark.parametrize("action", ["freeze", "unfreeze"])
async def test_admin_routes_need_an_operator_credential(
    anon: httpx.AsyncClient, headers: dict[str, str], status: int, code: str, action: str
) -> None:
    resp = await anon.post(
        f"/v1/admin/pools/CANYPOOL/{action}", json={"reason": "x"}, headers=headers
    )
    assert_error(resp, status, code)
    assert resp.headers["www-authenticate"].startswith("Bearer")


async def test_admin_on_an_unknown_pool_is_404(
    http: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    resp = await http.post(
        "/v1/admin/pools/CNOSUCHPOOL/freeze", json={"reason": "x"}, headers=admin_headers
    )
    assert_error(resp, 404, "pool_not_found")
    resp = await http.post("/v1/admin/pools/CNOSUCHPOOL/freeze", json={}, headers=admin_headers)
    assert_error(resp, 422, "validation_error")
