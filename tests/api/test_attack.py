"""The attack this authentication exists for, tried as a stranger on the network would: list
every open loan of a pool with its borrower, then cancel them one by one. It fails at the first
step, with no credential and with any credential a stranger can get (a SEP-10 token for an
account of their own, a platform key without the operator scope); and a loan id learned some
other way is no use either. The loans stay reserved."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from core.money import UNIT
from tests.api.credentials import bearer, sep10_token
from tests.api.helpers import assert_error, key, loan_body


async def test_enumerate_then_cancel_fails_at_the_first_step(
    anon: httpx.AsyncClient,
    http: httpx.AsyncClient,
    api_server: Any,
    saga_stack: Any,
    deploy_pool: Any,
    new_borrower: Any,
) -> None:
    pool = await deploy_pool(liquidity=1_000 * UNIT)
    await saga_stack.add_pool(pool)
    victims = await asyncio.gather(*[new_borrower(pool) for _ in range(3)])
    vendor, attacker = await new_borrower(), await new_borrower(pool)
    loan_ids = []
    for victim in victims:
        resp = await http.post(
            "/v1/loans",
            headers=key(),
            json=loan_body(pool.pool_id, victim.public_key, vendor.public_key),
        )
        assert resp.status_code == 201, resp.text
        loan_ids.append(resp.json()["loan_id"])

    own_token = await sep10_token(anon, attacker, api_server.settings.sep10_home_domain)
    _, platform = await api_server.keys.create(
        "a platform key", ["loans:write", "loans:read", "pools:read"]
    )
    for path in ("reservations", "audit", "blocked", "reconciliation"):
        url = f"/v1/pools/{pool.pool_id}/{path}"
        assert_error(await anon.get(url), 401, "unauthenticated")
        for credential in (own_token, platform):
            resp = await anon.get(url, headers=bearer(credential))
            assert assert_error(resp, 403, "forbidden") == {"required_scope": "operator"}
            assert not any(v.public_key in resp.text for v in victims)

    # Step two with ids learned elsewhere: refused too, and the loans are untouched.
    for loan_id in loan_ids:
        assert_error(await anon.post(f"/v1/loans/{loan_id}/cancel"), 401, "unauthenticated")
        assert_error(
            await anon.post(f"/v1/loans/{loan_id}/cancel", headers=bearer(own_token)),
            403,
            "forbidden",
        )
        assert_error(
            await anon.get(f"/v1/loans/{loan_id}", headers=bearer(own_token)), 403, "forbidden"
        )
    for loan_id in loan_ids:
        assert (await http.get(f"/v1/loans/{loan_id}")).json()["state"] == "reserved"
    reservations = (await http.get(f"/v1/pools/{pool.pool_id}/reservations")).json()
    assert sorted(r["loan_id"] for r in reservations["reservations"]) == sorted(loan_ids)
