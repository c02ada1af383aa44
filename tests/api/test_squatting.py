"""Squatting: one caller must not hold a pool's liquidity with reservations nobody signs. Rate
limits per API key and per borrower (429 rate_limited with Retry-After) and caps on open
unsigned reservations per key and per borrower (409 too_many_unsigned), under concurrent
requests over real HTTP: the refused requests reserve nothing (the ledger never sees them), and
a slot comes back when a loan is submitted, cancelled, expires, or is funded outside the API."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from api.routes.loans import loan_id_for
from chain.envelope import sign_envelope
from core.money import UNIT
from tests.api.credentials import bearer
from tests.api.helpers import assert_error, loan_body


@pytest.fixture
async def pool(saga_stack: Any, deploy_pool: Any) -> Any:
    deployed = await deploy_pool(liquidity=1_000 * UNIT)
    await saga_stack.add_pool(deployed)
    return deployed


@contextlib.contextmanager
def setting(settings: Any, **values: Any) -> Iterator[None]:
    old = {k: getattr(settings, k) for k in values}
    for k, v in values.items():
        setattr(settings, k, v)
    try:
        yield
    finally:
        for k, v in old.items():
            setattr(settings, k, v)


async def figures(http: httpx.AsyncClient, pool_id: str) -> tuple[int, list[str], int]:
    """Active reservations, their loan ids and the blocked stream's length."""
    status = (await http.get(f"/v1/pools/{pool_id}/liquidity")).json()
    rows = (await http.get(f"/v1/pools/{pool_id}/reservations")).json()["reservations"]
    blocked = (await http.get(f"/v1/pools/{pool_id}/blocked")).json()["entries"]
    return status["active_reservations"], sorted(r["loan_id"] for r in rows), len(blocked)


async def open_many(
    anon: httpx.AsyncClient,
    token: str,
    pool: Any,
    borrowers: list[Any],
    vendor: str,
    keys: list[str],
    **extra: Any,
) -> list[httpx.Response]:
    return list(
        await asyncio.gather(
            *[
                anon.post(
                    "/v1/loans",
                    json=loan_body(pool.pool_id, b.public_key, vendor, **extra),
                    headers={"Idempotency-Key": k, **bearer(token)},
                )
                for b, k in zip(borrowers, keys, strict=True)
            ]
        )
    )


def idem(n: int) -> list[str]:
    return [f"squat-{time.time_ns()}-{i}" for i in range(n)]


async def test_rate_limit_per_key_under_concurrency(
    anon: httpx.AsyncClient, http: httpx.AsyncClient, api_server: Any, pool: Any, new_borrower: Any
) -> None:
    _, token = await api_server.keys.create(
        "rate 5", ["loans:write", "loans:read"], rate_per_minute=5
    )
    borrowers = list(await asyncio.gather(*[new_borrower(pool) for _ in range(12)]))
    vendor = (await new_borrower()).public_key
    keys = idem(12)
    replies = await open_many(anon, token, pool, borrowers, vendor, keys)
    granted = [r for r in replies if r.status_code == 201]
    limited = [(r, k) for r, k in zip(replies, keys, strict=True) if r.status_code == 429]
    assert (len(granted), len(limited)) == (5, 7), [r.text for r in replies]
    for resp, k in limited:
        details = assert_error(resp, 429, "rate_limited")
        assert details["scope"] == "key" and details["limit_per_minute"] == 5
        assert 1 <= int(resp.headers["retry-after"]) <= 60
        assert details["retry_after_seconds"] == int(resp.headers["retry-after"])
        # Nothing was reserved, and no loan exists under that key.
        assert_error(await http.get(f"/v1/loans/{loan_id_for(k)}"), 404, "loan_not_found")
    active, ids, blocked = await figures(http, pool.pool_id)
    assert (active, blocked) == (5, 0)
    assert ids == sorted(r.json()["loan_id"] for r in granted)


async def test_rate_limit_per_borrower_under_concurrency(
    anon: httpx.AsyncClient, http: httpx.AsyncClient, api_server: Any, pool: Any, new_borrower: Any
) -> None:
    borrower, vendor = await new_borrower(pool), (await new_borrower()).public_key
    with setting(api_server.settings, loan_rate_per_borrower_per_minute=3):
        replies = await open_many(anon, api_server.full_key, pool, [borrower] * 8, vendor, idem(8))
    limited = [r for r in replies if r.status_code == 429]
    assert len(limited) == 5, [r.text for r in replies]
    for resp in limited:
        assert assert_error(resp, 429, "rate_limited")["scope"] == "borrower"
    active, _, _ = await figures(http, pool.pool_id)
    assert active == 1  # one account, one open funding transaction; the rest never got near


async def test_unsigned_cap_per_key_and_the_slots_coming_back(
    anon: httpx.AsyncClient, http: httpx.AsyncClient, api_server: Any, pool: Any, new_borrower: Any
) -> None:
    _, token = await api_server.keys.create("cap 3", ["loans:write", "loans:read"], max_unsigned=3)
    borrowers = list(await asyncio.gather(*[new_borrower(pool) for _ in range(14)]))
    vendor = (await new_borrower()).public_key
    replies = await open_many(anon, token, pool, borrowers[:10], vendor, idem(10))
    granted = [
        (r.json(), b) for r, b in zip(replies, borrowers, strict=False) if r.status_code == 201
    ]
    capped = [r for r in replies if r.status_code == 409]
    assert (len(granted), len(capped)) == (3, 7), [r.text for r in replies]
    for resp in capped:
        details = assert_error(resp, 409, "too_many_unsigned")
        assert details == {"scope": "key", "limit": 3, "open_unsigned": 3}
    active, ids, blocked = await figures(http, pool.pool_id)
    assert (active, blocked) == (3, 0)
    assert ids == sorted(g["loan_id"] for g, _ in granted)

    async def one(borrower: Any) -> httpx.Response:
        (resp,) = await open_many(anon, token, pool, [borrower], vendor, idem(1))
        return resp

    # Submitting one frees its slot.
    (first, first_b), (second, _), _ = granted
    signed = sign_envelope(
        first["funding"]["xdr"], first_b.secret, api_server.settings.network_passphrase
    )
    sent = await anon.post(
        f"/v1/loans/{first['loan_id']}/submit", json={"signed_xdr": signed}, headers=bearer(token)
    )
    assert sent.status_code == 202, sent.text
    assert (await one(borrowers[10])).status_code == 201
    # Cancelling one frees its slot.
    cancelled = await anon.post(f"/v1/loans/{second['loan_id']}/cancel", headers=bearer(token))
    assert cancelled.status_code == 202, cancelled.text
    assert (await one(borrowers[11])).status_code == 201
    # At the cap again.
    assert_error(await one(borrowers[12]), 409, "too_many_unsigned")


async def test_unsigned_cap_per_borrower_under_concurrency(
    anon: httpx.AsyncClient, http: httpx.AsyncClient, api_server: Any, pool: Any, new_borrower: Any
) -> None:
    borrower, vendor = await new_borrower(pool), (await new_borrower()).public_key
    with setting(api_server.settings, max_unsigned_per_borrower=1):
        replies = await open_many(anon, api_server.full_key, pool, [borrower] * 5, vendor, idem(5))
    assert sorted(r.status_code for r in replies) == [201, 409, 409, 409, 409], [
        r.text for r in replies
    ]
    for resp in replies:
        if resp.status_code == 409:
            assert assert_error(resp, 409, "too_many_unsigned")["scope"] == "borrower"
    active, _, blocked = await figures(http, pool.pool_id)
    assert (active, blocked) == (1, 0)


async def test_an_expired_reservation_frees_its_slot(
    anon: httpx.AsyncClient, api_server: Any, pool: Any, new_borrower: Any
) -> None:
    _, token = await api_server.keys.create("cap 1", ["loans:write"], max_unsigned=1)
    b1, b2, b3 = await asyncio.gather(*[new_borrower(pool) for _ in range(3)])
    vendor = (await new_borrower()).public_key
    (short,) = await open_many(anon, token, pool, [b1], vendor, idem(1), ttl_seconds=5)
    assert short.status_code == 201, short.text
    (capped,) = await open_many(anon, token, pool, [b2], vendor, idem(1))
    assert_error(capped, 409, "too_many_unsigned")
    await asyncio.sleep(max(0.0, short.json()["funding"]["expires_at"] - time.time()) + 1.1)
    (after,) = await open_many(anon, token, pool, [b3], vendor, idem(1))
    assert after.status_code == 201, after.text


async def test_a_loan_funded_outside_the_api_stops_counting(
    anon: httpx.AsyncClient,
    http: httpx.AsyncClient,
    api_server: Any,
    saga_stack: Any,
    pool: Any,
    new_borrower: Any,
) -> None:
    """The borrower's wallet sends the signed transaction to the chain itself: the API never
    hears of it, the watcher settles the loan, and the cap finds that out when it is reached."""
    _, token = await api_server.keys.create("cap 1, direct", ["loans:write"], max_unsigned=1)
    b1, b2 = await asyncio.gather(*[new_borrower(pool) for _ in range(2)])
    vendor = (await new_borrower()).public_key
    (first,) = await open_many(anon, token, pool, [b1], vendor, idem(1))
    assert first.status_code == 201, first.text
    signed = sign_envelope(
        first.json()["funding"]["xdr"], b1.secret, api_server.settings.network_passphrase
    )
    sent = await saga_stack.chain.submit(signed)
    assert sent.status == "pending", sent
    deadline = time.monotonic() + 30
    while (await http.get(f"/v1/loans/{first.json()['loan_id']}")).json()["state"] != "funded":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.2)
    (second,) = await open_many(anon, token, pool, [b2], vendor, idem(1))
    assert second.status_code == 201, second.text
