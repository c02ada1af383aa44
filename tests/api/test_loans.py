"""Every outcome of the loan routes, over real HTTP, against the real saga (Temporal dev server,
worker, watcher), the real ledger on Redis and the devnet. Each test deploys its own pool."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from stellar_sdk import Account, Keypair, TransactionBuilder, TransactionEnvelope

from chain.envelope import envelope_hash, sign_envelope
from core.money import UNIT
from tests.api.helpers import assert_error, key, loan_body, stroops, wait_state


@dataclass
class Pool:
    pool_id: str
    borrower: Keypair
    vendor: str
    deployed: Any  # devnet.kit.DeployedPool: funds more borrowers with its token

    def body(self, **kw: Any) -> dict[str, Any]:
        return loan_body(self.pool_id, self.borrower.public_key, self.vendor, **kw)


@pytest.fixture
async def pool(saga_stack: Any, deploy_pool: Any, new_borrower: Any) -> Pool:
    deployed = await deploy_pool(liquidity=1_000 * UNIT)
    await saga_stack.add_pool(deployed)
    borrower = await new_borrower(deployed)
    vendor = await new_borrower()
    return Pool(deployed.pool_id, borrower, vendor.public_key, deployed)


async def liquidity(http: httpx.AsyncClient, pool_id: str) -> dict[str, Any]:
    resp = await http.get(f"/v1/pools/{pool_id}/liquidity")
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


async def open_loan(http: httpx.AsyncClient, pool: Pool, **kw: Any) -> dict[str, Any]:
    resp = await http.post("/v1/loans", json=pool.body(**kw), headers=key())
    assert resp.status_code == 201, resp.text
    body: dict[str, Any] = resp.json()
    return body


async def test_open_returns_the_funding_xdr_and_reserves(
    http: httpx.AsyncClient, pool: Pool, api_server: Any
) -> None:
    headers = key()
    resp = await http.post(
        "/v1/loans", json=pool.body(total="100", guarantee="20"), headers=headers
    )
    assert resp.status_code == 201, resp.text
    assert "idempotent-replayed" not in resp.headers
    created = resp.json()
    assert set(created) == {"loan_id", "state", "funding", "reserved_amount"}
    assert created["state"] == "reserved"
    assert created["reserved_amount"] == "80"
    assert resp.headers["location"] == f"/v1/loans/{created['loan_id']}"
    funding = created["funding"]
    passphrase = api_server.settings.network_passphrase
    assert envelope_hash(funding["xdr"], passphrase) == funding["tx_hash"]
    tx = TransactionEnvelope.from_xdr(funding["xdr"], passphrase).transaction
    assert tx.source.account_id == pool.borrower.public_key
    assert tx.preconditions is not None and tx.preconditions.time_bounds is not None
    assert tx.preconditions.time_bounds.max_time == funding["expires_at"]

    figures = await liquidity(http, pool.pool_id)
    assert (figures["reserved"], figures["available"], figures["active_reservations"]) == (
        "80",
        "920",
        1,
    )
    reservations = (await http.get(f"/v1/pools/{pool.pool_id}/reservations")).json()
    assert [(r["loan_id"], r["amount"]) for r in reservations["reservations"]] == [
        (created["loan_id"], "80")
    ]
    audit = (await http.get(f"/v1/pools/{pool.pool_id}/audit")).json()["entries"]
    assert any(e["action"] == "reserve" and e["loan_id"] == created["loan_id"] for e in audit)

    view = (await http.get(f"/v1/loans/{created['loan_id']}")).json()
    assert view["state"] == "reserved"
    assert (view["total_amount"], view["guarantee_amount"], view["reserved_amount"]) == (
        "100",
        "20",
        "80",
    )
    assert view["funding"] == funding


async def test_replay_returns_the_original_and_reuse_is_refused(
    http: httpx.AsyncClient, pool: Pool
) -> None:
    headers = key()
    first = await http.post("/v1/loans", json=pool.body(total="100"), headers=headers)
    assert first.status_code == 201, first.text
    # Same meaning written differently ("100.000" == "100") is the same request.
    again = await http.post("/v1/loans", json=pool.body(total="100.000"), headers=headers)
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()

    other = await http.post(
        "/v1/loans",
        json=pool.body(
            total="101",
        ),
        headers=headers,
    )
    details = assert_error(other, 422, "idempotency_key_reused")
    assert details["loan_id"] == first.json()["loan_id"]
    assert (await liquidity(http, pool.pool_id))["reserved"] == "80"  # reserved once


async def test_racing_duplicates_get_the_one_result(http: httpx.AsyncClient, pool: Pool) -> None:
    headers = key()
    replies = await asyncio.gather(
        *[http.post("/v1/loans", json=pool.body(), headers=headers) for _ in range(6)]
    )
    assert {r.status_code for r in replies} == {201}
    assert len({r.json()["funding"]["tx_hash"] for r in replies}) == 1
    assert sum("idempotent-replayed" not in r.headers for r in replies) == 1
    figures = await liquidity(http, pool.pool_id)
    assert (figures["reserved"], figures["active_reservations"]) == ("80", 1)


async def test_more_requests_than_liquidity_refuses_the_excess(
    http: httpx.AsyncClient, pool: Pool, new_borrower: Any
) -> None:
    # 8 concurrent loans of 200 funded each against 1000 available: exactly 5 fit. One borrower
    # each: a borrower's second open loan would reuse its account sequence and is declined.
    borrowers = await asyncio.gather(*[new_borrower(pool.deployed) for _ in range(8)])
    replies = await asyncio.gather(
        *[
            http.post(
                "/v1/loans",
                headers=key(),
                json=loan_body(
                    pool.pool_id, b.public_key, pool.vendor, total="250", guarantee="50"
                ),
            )
            for b in borrowers
        ]
    )
    granted = [r for r in replies if r.status_code == 201]
    refused = [r for r in replies if r.status_code != 201]
    assert len(granted) == 5, [r.text for r in replies]
    for resp in refused:
        details = assert_error(resp, 409, "insufficient_liquidity")
        available, required, shortage = (
            stroops(details[k]) for k in ("available", "required", "shortage")
        )
        assert required == 200 * UNIT
        assert 0 <= available < required
        assert shortage == required - available
    figures = await liquidity(http, pool.pool_id)
    assert (figures["reserved"], figures["available"], figures["active_reservations"]) == (
        "1000",
        "0",
        5,
    )
    blocked = (await http.get(f"/v1/pools/{pool.pool_id}/blocked")).json()["entries"]
    assert len(blocked) == 3
    assert all(e["reason"] == "insufficient" and e["required"] == "200" for e in blocked)


async def test_credit_declined_is_422_with_reasons(http: httpx.AsyncClient, pool: Pool) -> None:
    resp = await http.post("/v1/loans", json=pool.body(total="100", guarantee="1"), headers=key())
    details = assert_error(resp, 422, "credit_declined")
    assert details["reasons"] and all(isinstance(r, str) for r in details["reasons"])
    view = (await http.get(f"/v1/loans/{details['loan_id']}")).json()
    assert view["state"] == "refused" and view["refusal"]["code"] == "credit_declined"
    assert (await liquidity(http, pool.pool_id))["reserved"] == "0"


async def test_frozen_pool_is_423_until_unfrozen(
    http: httpx.AsyncClient, pool: Pool, admin_headers: dict[str, str]
) -> None:
    frozen = await http.post(
        f"/v1/admin/pools/{pool.pool_id}/freeze",
        json={"reason": "drift under investigation"},
        headers=admin_headers,
    )
    assert frozen.status_code == 200, frozen.text
    assert frozen.json()["frozen"] is True
    assert frozen.json()["liquidity"]["frozen_reason"] == "drift under investigation"
    assert_error(await http.post("/v1/loans", json=pool.body(), headers=key()), 423, "pool_frozen")
    thawed = await http.post(
        f"/v1/admin/pools/{pool.pool_id}/unfreeze",
        json={"reason": "explained"},
        headers=admin_headers,
    )
    assert thawed.status_code == 200 and thawed.json()["frozen"] is False
    await open_loan(http, pool)


async def test_pool_unknown_to_the_ledger_is_503(
    http: httpx.AsyncClient, saga_stack: Any, deploy_pool: Any, pool: Pool
) -> None:
    deployed = await deploy_pool(liquidity=100 * UNIT)
    saga_stack.settings.pools[deployed.pool_id] = deployed.creditline_id  # never established
    body = {**pool.body(), "pool_id": deployed.pool_id}
    resp = await http.post("/v1/loans", json=body, headers=key())
    assert_error(resp, 503, "pool_unknown")
    assert resp.headers["retry-after"]
    assert (await liquidity(http, deployed.pool_id))["known"] is False


async def test_pool_unknown_is_not_the_idempotent_result(
    http: httpx.AsyncClient, saga_stack: Any, deploy_pool: Any, new_borrower: Any
) -> None:
    """pool_unknown is transient (Retry-After): a retry with the same key once the ledger
    knows the pool again gets the real answer, and from then on that answer is the key's."""
    deployed = await deploy_pool(liquidity=100 * UNIT)
    borrower, vendor = await new_borrower(deployed), await new_borrower()
    saga_stack.settings.pools[deployed.pool_id] = deployed.creditline_id  # not yet established
    body = loan_body(deployed.pool_id, borrower.public_key, vendor.public_key)
    headers = key()
    for _ in range(2):  # still unknown: refused again, never a stored refusal
        refused = await http.post("/v1/loans", json=body, headers=headers)
        assert_error(refused, 503, "pool_unknown")
        assert refused.headers["retry-after"]

    await saga_stack.add_pool(deployed)  # the reconciler establishes it
    opened = await http.post("/v1/loans", json=body, headers=headers)
    assert opened.status_code == 201, opened.text
    assert "idempotent-replayed" not in opened.headers
    again = await http.post("/v1/loans", json=body, headers=headers)
    assert again.status_code == 201, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["loan_id"] == opened.json()["loan_id"]
    figures = await liquidity(http, deployed.pool_id)
    assert stroops(figures["reserved"]) == 80 * UNIT  # one reservation for the key
    other = await http.post("/v1/loans", json={**body, "total_amount": "101"}, headers=headers)
    assert_error(other, 422, "idempotency_key_reused")


async def test_submit_relays_a_signed_envelope_and_the_loan_funds(
    http: httpx.AsyncClient, pool: Pool, api_server: Any
) -> None:
    created = await open_loan(http, pool, total="100", guarantee="20")
    signed = sign_envelope(
        created["funding"]["xdr"], pool.borrower.secret, api_server.settings.network_passphrase
    )
    resp = await http.post(f"/v1/loans/{created['loan_id']}/submit", json={"signed_xdr": signed})
    assert resp.status_code == 202, resp.text
    assert resp.json()["state"] in {"reserved", "submitted", "funded"}
    funded = await wait_state(http, created["loan_id"], {"funded", "failed"})
    assert funded["state"] == "funded", funded
    assert funded["settled_ledger"]
    # The same envelope again is an idempotent 202, not a second relay.
    again = await http.post(f"/v1/loans/{created['loan_id']}/submit", json={"signed_xdr": signed})
    assert again.status_code == 202 and again.json()["state"] == "funded"
    figures = await liquidity(http, pool.pool_id)
    assert figures["reserved"] == "0"
    assert stroops(figures["available"]) == 920 * UNIT  # the 80 left the pool, once


def _tampered(xdr: str, passphrase: str) -> str:
    """The same call with a higher fee: a different transaction, hence a different hash."""
    envelope = TransactionEnvelope.from_xdr(xdr, passphrase)
    envelope.transaction.fee += 1
    return envelope.to_xdr()


async def test_submit_refuses_envelopes_that_are_not_the_borrowers_funding_tx(
    http: httpx.AsyncClient, pool: Pool, api_server: Any
) -> None:
    passphrase = api_server.settings.network_passphrase
    created = await open_loan(http, pool)
    loan_id, funding = created["loan_id"], created["funding"]
    url = f"/v1/loans/{loan_id}/submit"

    unsigned = await http.post(url, json={"signed_xdr": funding["xdr"]})
    assert assert_error(unsigned, 400, "xdr_mismatch")["reason"] == "not_signed_by_borrower"

    stranger = sign_envelope(funding["xdr"], Keypair.random().secret, passphrase)
    assert (
        assert_error(await http.post(url, json={"signed_xdr": stranger}), 400, "xdr_mismatch")[
            "reason"
        ]
        == "not_signed_by_borrower"
    )

    tampered = sign_envelope(
        _tampered(funding["xdr"], passphrase), pool.borrower.secret, passphrase
    )
    details = assert_error(await http.post(url, json={"signed_xdr": tampered}), 400, "xdr_mismatch")
    assert details["reason"] == "hash_differs"
    assert details["expected_tx_hash"] == funding["tx_hash"] != details["tx_hash"]

    # A different transaction altogether, properly signed by the borrower.
    other_tx = (
        TransactionBuilder(Account(pool.borrower.public_key, 1), passphrase, 100)
        .append_bump_sequence_op(5)
        .set_timeout(60)
        .build()
    )
    other_tx.sign(pool.borrower)
    assert (
        assert_error(
            await http.post(url, json={"signed_xdr": other_tx.to_xdr()}), 400, "xdr_mismatch"
        )["reason"]
        == "hash_differs"
    )

    assert (
        assert_error(await http.post(url, json={"signed_xdr": "not-xdr!"}), 400, "xdr_mismatch")[
            "reason"
        ]
        == "malformed"
    )

    view = (await http.get(f"/v1/loans/{loan_id}")).json()
    assert view["state"] == "reserved"  # nothing was relayed
    assert (await liquidity(http, pool.pool_id))["reserved"] == "80"


async def test_cancel_releases_and_a_closed_loan_refuses_more(
    http: httpx.AsyncClient, pool: Pool, api_server: Any
) -> None:
    created = await open_loan(http, pool)
    loan_id = created["loan_id"]
    resp = await http.post(f"/v1/loans/{loan_id}/cancel", json={"reason": "changed my mind"})
    assert resp.status_code == 202, resp.text
    await wait_state(http, loan_id, {"cancelled"})
    assert (await liquidity(http, pool.pool_id))["reserved"] == "0"
    assert_error(await http.post(f"/v1/loans/{loan_id}/cancel"), 409, "loan_closed")
    signed = sign_envelope(
        created["funding"]["xdr"], pool.borrower.secret, api_server.settings.network_passphrase
    )
    assert_error(
        await http.post(f"/v1/loans/{loan_id}/submit", json={"signed_xdr": signed}),
        409,
        "loan_not_reserved",
    )
    audit = (await http.get(f"/v1/pools/{pool.pool_id}/audit")).json()["entries"]
    assert any(e["action"] == "release" and e["loan_id"] == loan_id for e in audit)


async def test_a_loan_nobody_signs_expires_and_releases(
    http: httpx.AsyncClient, pool: Pool
) -> None:
    created = await open_loan(http, pool, ttl_seconds=5)
    assert (await liquidity(http, pool.pool_id))["reserved"] == "80"
    view = await wait_state(http, created["loan_id"], {"expired"}, within=30)
    assert view["state"] == "expired"
    assert (await liquidity(http, pool.pool_id))["reserved"] == "0"
