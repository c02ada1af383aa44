"""StepFi's create_loan refusals at open, over real HTTP against the real saga: every check the
contract would fail comes back as `422 credit_declined` with its typed reason, the loan holds no
reservation afterwards (released in the same open) and no transaction was handed out to sign."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from stellar_sdk import Keypair

from core.money import UNIT
from devnet.kit import deploy_pool, devnet_call, set_reputation, set_vendor
from tests.api.helpers import assert_error, key, loan_body


async def _refused_at_open(http: httpx.AsyncClient, body: dict[str, Any], reason: str) -> None:
    resp = await http.post("/v1/loans", json=body, headers=key())
    details = assert_error(resp, 422, "credit_declined")
    assert details["reason"] == reason, details
    assert "xdr" not in resp.text  # nothing to sign was handed out
    loan = (await http.get(f"/v1/loans/{details['loan_id']}")).json()
    assert loan["state"] == "refused" and loan["funding"] is None, loan
    assert loan["reserved_amount"] == "0"
    pool_id = body["pool_id"]
    liquidity = (await http.get(f"/v1/pools/{pool_id}/liquidity")).json()
    assert (liquidity["reserved"], liquidity["active_reservations"]) == ("0", 0), liquidity
    reservations = (await http.get(f"/v1/pools/{pool_id}/reservations")).json()
    assert all(r.get("loan_id") != details["loan_id"] for r in _rows(reservations))


def _rows(payload: Any) -> list[dict[str, Any]]:
    if isinstance(payload, list):
        return payload
    for value in payload.values():
        if isinstance(value, list):
            return value
    return []


@pytest.fixture
async def stepfi_pool(saga_stack: Any, devnet: Any, new_borrower: Any) -> Any:
    deployed = await deploy_pool(devnet.rpc_url, devnet.passphrase, liquidity=5_000 * UNIT)
    await saga_stack.add_pool(deployed)
    return deployed


async def test_inactive_vendor(http, stepfi_pool, new_borrower, devnet) -> None:
    borrower = await new_borrower(stepfi_pool)
    vendor = Keypair.random().public_key
    await set_vendor(devnet.rpc_url, vendor, active=False)
    body = loan_body(stepfi_pool.pool_id, borrower.public_key, vendor)
    await _refused_at_open(http, body, "vendor_not_active")


async def test_insufficient_reputation(http, stepfi_pool, new_borrower, devnet) -> None:
    borrower, vendor = await new_borrower(stepfi_pool), await new_borrower()
    await set_reputation(devnet.rpc_url, borrower.public_key, 49)
    body = loan_body(stepfi_pool.pool_id, borrower.public_key, vendor.public_key)
    await _refused_at_open(http, body, "insufficient_reputation")


async def test_exposure_limit(http, stepfi_pool, new_borrower, devnet) -> None:
    """Score 60: a 2 500-unit limit; 2 300 units + 8 % interest + 1 % fee is 2 507."""
    borrower, vendor = await new_borrower(stepfi_pool), await new_borrower()
    await set_reputation(devnet.rpc_url, borrower.public_key, 60)
    body = loan_body(
        stepfi_pool.pool_id, borrower.public_key, vendor.public_key, total="2300", guarantee="460"
    )
    await _refused_at_open(http, body, "exposure_limit_exceeded")
    ok = loan_body(
        stepfi_pool.pool_id, borrower.public_key, vendor.public_key, total="2200", guarantee="440"
    )
    resp = await http.post("/v1/loans", json=ok, headers=key())
    assert resp.status_code == 201, resp.text  # within the cap: offered


async def test_no_vendor_registry_and_a_broken_one(http, saga_stack, new_borrower, devnet) -> None:
    bare = await deploy_pool(
        devnet.rpc_url, devnet.passphrase, liquidity=100 * UNIT, vendor_registry=False
    )
    await saga_stack.add_pool(bare)
    borrower, vendor = await new_borrower(bare), await new_borrower()
    await _refused_at_open(
        http, loan_body(bare.pool_id, borrower.public_key, vendor.public_key), "invalid_vendor"
    )
    admin = Keypair.from_secret(bare.admin_secret).public_key
    ids = await devnet_call(devnet.rpc_url, "devnet_deployPool", {"admin": admin})
    broken = await deploy_pool(
        devnet.rpc_url, devnet.passphrase, liquidity=100 * UNIT, vendor_registry=ids["tokenId"]
    )
    await saga_stack.add_pool(broken)
    other = await new_borrower(broken)
    await _refused_at_open(
        http,
        loan_body(broken.pool_id, other.public_key, vendor.public_key),
        "vendor_validation_failed",
    )


async def test_guarantee_below_stepfi_20_percent_is_declined_before_reserving(
    http, stepfi_pool, new_borrower
) -> None:
    borrower, vendor = await new_borrower(stepfi_pool), await new_borrower()
    body = loan_body(
        stepfi_pool.pool_id,
        borrower.public_key,
        vendor.public_key,
        total="100",
        guarantee="19.9999999",
    )
    await _refused_at_open(http, body, "insufficient_guarantee")
