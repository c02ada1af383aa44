"""The two access settings, read from the environment as a deployment sets them: a second
`uvicorn api.app:app` process started with `PUBLIC_LIQUIDITY=true` and
`WALLET_OPENS_ENABLED=false`, next to the test API with the defaults (the same Redis, Temporal
and secrets, so a token minted by one is valid on the other).

- public liquidity: the pool's figures to a caller with no credential, equal to what an
  authenticated caller reads; everything operator-only stays refused; off (the default), 401.
- wallet opens disabled: a borrower's own token is refused with 403 naming `loans:write` and
  nothing is reserved; the same token opens the same loan on the default process (enabled)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from core.money import UNIT
from tests.api.credentials import bearer, sep10_token
from tests.api.helpers import assert_error, key, loan_body
from tests.api.test_keys_cli import start_api, wait_ready
from tools.procs import free_port


async def test_public_liquidity_and_wallet_opens_follow_the_environment(
    anon: httpx.AsyncClient,
    api_server: Any,
    saga_stack: Any,
    deploy_pool: Any,
    new_borrower: Any,
    tmp_path: Any,
) -> None:
    pool = await deploy_pool(liquidity=1_000 * UNIT)
    await saga_stack.add_pool(pool)
    me, vendor = await asyncio.gather(new_borrower(pool), new_borrower())
    settings = api_server.settings.model_copy(
        update={"public_liquidity": True, "wallet_opens_enabled": False}
    )
    port = free_port()
    other_url = f"http://127.0.0.1:{port}"
    proc = start_api(settings, port, tmp_path)
    try:
        await asyncio.to_thread(wait_ready, other_url, proc)
        platform = bearer(api_server.full_key)
        liquidity = f"/v1/pools/{pool.pool_id}/liquidity"

        # Public liquidity: no credential, the same figures an authenticated caller reads.
        public = await anon.get(f"{other_url}{liquidity}")
        assert public.status_code == 200, public.text
        assert public.json() == (await anon.get(liquidity, headers=platform)).json()
        assert_error(await anon.get(liquidity), 401, "unauthenticated")  # the default: off
        for path in ("reservations", "audit", "blocked", "reconciliation"):
            resp = await anon.get(f"{other_url}/v1/pools/{pool.pool_id}/{path}")
            assert_error(resp, 401, "unauthenticated")
        assert_error(
            await anon.get(f"{other_url}/v1/pools/no-such-pool/liquidity"), 404, "pool_not_found"
        )

        # Wallet opens disabled: the borrower's own token is refused, nothing is reserved.
        token = await sep10_token(anon, me, api_server.settings.sep10_home_domain)
        body = loan_body(pool.pool_id, me.public_key, vendor.public_key)
        before = public.json()
        refused = await anon.post(
            f"{other_url}/v1/loans", json=body, headers={**key(), **bearer(token)}
        )
        assert assert_error(refused, 403, "forbidden") == {"required_scope": "loans:write"}
        after = (await anon.get(f"{other_url}{liquidity}")).json()
        assert after == before
        # ... while a platform key still opens there,
        by_key = await anon.post(
            f"{other_url}/v1/loans",
            json=loan_body(
                pool.pool_id, me.public_key, vendor.public_key, total="50", guarantee="10"
            ),
            headers={**key(), **platform},
        )
        assert by_key.status_code == 201, by_key.text
        cancel = await anon.post(
            f"/v1/loans/{by_key.json()['loan_id']}/cancel", json={}, headers=platform
        )
        assert cancel.status_code == 202, cancel.text
        await wait_reservations(anon, liquidity, platform, before["active_reservations"])
        # ... and enabled (the default process), the same token opens the same loan.
        opened = await anon.post("/v1/loans", json=body, headers={**key(), **bearer(token)})
        assert opened.status_code == 201, opened.text
        view = await anon.get(f"/v1/loans/{opened.json()['loan_id']}", headers=bearer(token))
        assert view.status_code == 200 and view.json()["borrower"] == me.public_key
    finally:
        proc.terminate()
        await asyncio.to_thread(proc.wait, 15)


async def wait_reservations(
    http: httpx.AsyncClient, url: str, headers: dict[str, str], count: int
) -> None:
    """The cancelled loan's reservation released (the saga releases it asynchronously)."""
    for _ in range(300):
        if (await http.get(url, headers=headers)).json()["active_reservations"] == count:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the cancelled loan's reservation was not released")
