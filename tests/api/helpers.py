"""Request builders and assertions shared by the API tests."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx

from core.money import to_stroops

# One due date for the whole run: a body built from the clock would change between two requests
# that straddle a second, and a replay of "the same" request would then read as a reused key.
DUE_DATE = int(time.time()) + 30 * 86400


def loan_body(
    pool_id: str,
    borrower: str,
    vendor: str,
    *,
    total: str = "100",
    guarantee: str = "20",
    **extra: Any,
) -> dict[str, Any]:
    return {
        "pool_id": pool_id,
        "borrower": borrower,
        "vendor": vendor,
        "total_amount": total,
        "guarantee_amount": guarantee,
        "repayment_schedule": [{"amount": total, "due_date": DUE_DATE}],
        "loan_type": 0,
        **extra,
    }


def key() -> dict[str, str]:
    return {"Idempotency-Key": f"test-{uuid.uuid4()}"}


def assert_error(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The one error shape, with the expected status and code; returns `details`."""
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    details: dict[str, Any] = body["error"]["details"]
    assert isinstance(details, dict)
    return details


def stroops(text: str) -> int:
    return to_stroops(text, allow_zero=True)


async def wait_state(
    http: httpx.AsyncClient, loan_id: str, states: set[str], within: float = 30
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        resp = await http.get(f"/v1/loans/{loan_id}")
        assert resp.status_code == 200, resp.text
        view: dict[str, Any] = resp.json()
        if view["state"] in states:
            return view
        if time.monotonic() > deadline:
            raise AssertionError(f"loan {loan_id} stuck in {view['state']}, wanted {states}")
        await asyncio.sleep(0.2)
