"""Bad input never reaches the saga and never yields a 5xx: every refusal is a 4xx in the one
error shape. A configured pool is used where the body must otherwise be valid, so the only
reason for the refusal is the field under test."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from stellar_sdk import Keypair

from tests.api.helpers import assert_error, key, loan_body

BORROWER = Keypair.random().public_key
VENDOR = Keypair.random().public_key


@pytest.fixture
def body(shared_pool: Any) -> dict[str, Any]:
    # A pool the API knows: validation must fail for the field under test, not for the pool.
    return loan_body(shared_pool.pool_id, BORROWER, VENDOR)


async def test_missing_idempotency_key_is_400_even_with_a_bad_body(
    http: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    assert_error(await http.post("/v1/loans", json=body), 400, "idempotency_key_required")
    assert_error(await http.post("/v1/loans", json={"x": 1}), 400, "idempotency_key_required")
    assert_error(
        await http.post("/v1/loans", json=body, headers={"Idempotency-Key": ""}),
        400,
        "idempotency_key_required",
    )
    assert_error(
        await http.post("/v1/loans", json=body, headers={"Idempotency-Key": "k" * 300}),
        400,
        "invalid_idempotency_key",
    )


async def test_malformed_json_is_400(http: httpx.AsyncClient) -> None:
    resp = await http.post(
        "/v1/loans", content=b'{"pool_id": ', headers={**key(), "content-type": "application/json"}
    )
    assert_error(resp, 400, "malformed_json")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("total_amount", 100),  # a JSON number: amounts are decimal strings only
        ("total_amount", 100.5),
        ("total_amount", "1.00000001"),  # 8 decimals
        ("total_amount", "-5"),
        ("total_amount", "0"),
        ("total_amount", "1e5"),  # exponent form refused before Decimal -> int
        ("total_amount", "9" * 60),  # beyond i128
        ("total_amount", " 5"),
        ("guarantee_amount", "0"),
        ("guarantee_amount", "200"),  # more than the total
        ("borrower", "GABC"),
        ("borrower", Keypair.random().secret),  # a secret seed is not an account id
        ("vendor", 12),
        ("repayment_schedule", []),
        ("repayment_schedule", [{"amount": "1", "due_date": -1}]),
        ("repayment_schedule", [{"amount": "1", "due_date": 2**64}]),
        ("repayment_schedule", [{"amount": "1", "due_date": "soon"}]),
        ("repayment_schedule", "monthly"),
        ("loan_type", 2**32),
        ("loan_type", "0"),
        ("loan_type", True),
        ("ttl_seconds", 1),
        ("ttl_seconds", 10**30),
        ("pool_id", ""),
        ("pool_id", None),
        ("unexpected_field", 1),
    ],
)
async def test_invalid_loan_fields_are_422(
    http: httpx.AsyncClient, body: dict[str, Any], field: str, value: Any
) -> None:
    details = assert_error(
        await http.post("/v1/loans", json={**body, field: value}, headers=key()),
        422,
        "validation_error",
    )
    assert details["errors"], details


async def test_an_amount_within_i128_but_beyond_policy_is_declined_not_5xx(
    http: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    huge = "170141183460469231731687303715.8841000"  # < i128 max, > int64 stroops
    resp = await http.post(
        "/v1/loans",
        json={
            **body,
            "total_amount": huge,
            "repayment_schedule": [{"amount": huge, "due_date": 2**40}],
        },
        headers=key(),
    )
    assert_error(resp, 422, "credit_declined")


async def test_missing_field_and_wrong_top_level_type_are_422(
    http: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    del body["vendor"]
    assert_error(await http.post("/v1/loans", json=body, headers=key()), 422, "validation_error")
    assert_error(await http.post("/v1/loans", json=[1, 2], headers=key()), 422, "validation_error")
    assert_error(await http.post("/v1/loans", json="x", headers=key()), 422, "validation_error")


async def test_unknown_pool_is_422(http: httpx.AsyncClient, body: dict[str, Any]) -> None:
    details = assert_error(
        await http.post("/v1/loans", json={**body, "pool_id": "CNOSUCHPOOL"}, headers=key()),
        422,
        "pool_not_found",
    )
    assert details["pool_id"] == "CNOSUCHPOOL"


async def test_ttl_above_the_server_maximum_is_422(
    http: httpx.AsyncClient, body: dict[str, Any], api_server: Any
) -> None:
    too_long = api_server.settings.reservation_ttl_seconds + 1
    details = assert_error(
        await http.post("/v1/loans", json={**body, "ttl_seconds": too_long}, headers=key()),
        422,
        "validation_error",
    )
    assert details["max_ttl_seconds"] == api_server.settings.reservation_ttl_seconds


@pytest.mark.parametrize(
    "loan_id", ["nope", "00000000-0000-0000-0000-000000000000", "%F0%9F%92%A5", "x" * 500]
)
async def test_unknown_loans_are_404(http: httpx.AsyncClient, loan_id: str) -> None:
    assert_error(await http.get(f"/v1/loans/{loan_id}"), 404, "loan_not_found")
    assert_error(await http.post(f"/v1/loans/{loan_id}/cancel"), 404, "loan_not_found")
    assert_error(
        await http.post(f"/v1/loans/{loan_id}/submit", json={"signed_xdr": "AAAA"}),
        404,
        "loan_not_found",
    )


@pytest.mark.parametrize("path", ["liquidity", "reservations", "audit", "blocked"])
async def test_unknown_pools_are_404(http: httpx.AsyncClient, path: str) -> None:
    details = assert_error(await http.get(f"/v1/pools/CNOSUCHPOOL/{path}"), 404, "pool_not_found")
    assert details["pool_id"] == "CNOSUCHPOOL"


@pytest.mark.parametrize(
    "query", ["count=0", "count=100000", "count=x", "before=abc", "before=1-2-3"]
)
async def test_bad_paging_is_422(http: httpx.AsyncClient, body: dict[str, Any], query: str) -> None:
    assert_error(
        await http.get(f"/v1/pools/{body['pool_id']}/audit?{query}"), 422, "validation_error"
    )


@pytest.mark.parametrize("stream", ["audit", "blocked"])
@pytest.mark.parametrize(
    "before", ["18446744073709551616", "1-18446744073709551616", "99999999999999999999-0"]
)
async def test_stream_ids_beyond_64_bits_are_422_not_500(
    http: httpx.AsyncClient, body: dict[str, Any], stream: str, before: str
) -> None:
    assert_error(
        await http.get(f"/v1/pools/{body['pool_id']}/{stream}?before={before}"),
        422,
        "invalid_cursor",
    )


@pytest.mark.parametrize("before", ["0", "0-0"])
async def test_nothing_is_older_than_the_first_stream_id(
    http: httpx.AsyncClient, body: dict[str, Any], before: str
) -> None:
    resp = await http.get(f"/v1/pools/{body['pool_id']}/blocked?before={before}")
    assert resp.status_code == 200, resp.text
    assert resp.json()["entries"] == []


async def test_routing_errors_keep_the_shape(http: httpx.AsyncClient) -> None:
    assert_error(await http.get("/v1/nothing-here"), 404, "not_found")
    assert_error(await http.delete("/v1/loans"), 405, "method_not_allowed")


async def test_submit_and_cancel_bodies_are_validated(http: httpx.AsyncClient) -> None:
    loan = "00000000-0000-0000-0000-000000000000"
    assert_error(await http.post(f"/v1/loans/{loan}/submit", json={}), 422, "validation_error")
    assert_error(
        await http.post(f"/v1/loans/{loan}/submit", json={"signed_xdr": 5}), 422, "validation_error"
    )
    assert_error(
        await http.post(f"/v1/loans/{loan}/cancel", json={"reason": 5}), 422, "validation_error"
    )
