"""The reconciliation over real HTTP: no report yet is a 404 in the one error shape; the admin
route (bearer token) runs the workflow now and returns its report, which GET then serves."""

from __future__ import annotations

import httpx

from core.money import UNIT
from devnet.kit import create_loan_direct
from tests.api.helpers import assert_error
from tests.saga.helpers import terms_for


async def test_report_served_after_an_admin_run(
    http: httpx.AsyncClient,
    anon: httpx.AsyncClient,
    admin_headers: dict[str, str],
    saga_stack,
    deploy_pool,
    new_borrower,
    api_server,
) -> None:
    pool = await deploy_pool(liquidity=100 * UNIT)
    await saga_stack.add_pool(pool)
    url = f"/v1/pools/{pool.pool_id}/reconciliation"
    details = assert_error(await http.get(url), 404, "reconciliation_not_found")
    assert details == {"pool_id": pool.pool_id}
    assert_error(await http.get("/v1/pools/CNOSUCHPOOL/reconciliation"), 404, "pool_not_found")

    body = {"pool_ids": [pool.pool_id, "CNOSUCHPOOL"]}
    assert_error(await anon.post("/v1/admin/reconcile", json=body), 401, "unauthenticated")
    assert_error(await anon.get(url), 401, "unauthenticated")
    _, platform = await api_server.keys.create("no operator", ["loans:write", "pools:read"])
    details = assert_error(
        await anon.post(
            "/v1/admin/reconcile", json=body, headers={"Authorization": f"Bearer {platform}"}
        ),
        403,
        "forbidden",
    )
    assert details == {"required_scope": "operator"}
    first = await http.post("/v1/admin/reconcile", json=body, headers=admin_headers)
    assert first.status_code == 200, first.text
    run = first.json()
    assert run["failures"] == {"CNOSUCHPOOL": "pool is not configured"}
    (report,) = run["reports"]
    assert report["pool_id"] == pool.pool_id
    assert report["chain"]["total"] == "100" and report["chain"]["locked"] == "0"
    assert report["explanation"] is None and report["previous_ledger"] is None

    outsider, vendor = await new_borrower(pool), await new_borrower()
    direct = await create_loan_direct(
        saga_stack.settings.rpc_url,
        saga_stack.settings.network_passphrase,
        pool.creditline_id,
        terms_for(outsider.public_key, vendor.public_key, 12 * UNIT + 5),
        outsider.secret,
    )
    assert direct.status == "success", direct
    second = await http.post(
        "/v1/admin/reconcile", json={"pool_ids": [pool.pool_id]}, headers=admin_headers
    )
    assert second.status_code == 200, second.text
    (report,) = second.json()["reports"]
    exp = report["explanation"]
    assert exp["funded_external"] == "12.0000005" and exp["locked_delta"] == "12.0000005"
    assert exp["external"] == [
        {
            "tx_hash": direct.tx_hash,
            "ledger": exp["external"][0]["ledger"],
            "amount": "12.0000005",
            "loan_id": None,
        }
    ]
    assert exp["unexplained_locked"] == "0" and report["counts"]["external_loans"] == 1
    assert report["frozen"] is False

    served = await http.get(url)
    assert served.status_code == 200, served.text
    assert served.json() == report
