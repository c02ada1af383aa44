"""Terminal metrics count each loan once even when its last workflow task runs twice.

Workflow code after the last completed task runs again (not as a replay) when the server refuses
that task's completion because a signal arrived meanwhile: the workflow's meter, which skips only
replays, then counted such a loan twice. Here every loan gets a storm of duplicate `submitted`
signals (ignored by the workflow: the relay already happened) from its submission until its
workflow closes, so signals land during its final task; the worker's log shows the re-executions
(the workflow logger, like its meter, is silent on replay only), and the counters still equal the
loans: `loans_finished_total` and `loan_settlement_duration_seconds` come from the commit and
release activities, whose completion is recorded once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from decimal import Decimal
from typing import Any

import redis.asyncio as aioredis

from chain.envelope import sign_envelope
from core.models import Submitted
from core.money import UNIT
from devnet.kit import deploy_pool, new_funded_keypair
from tests.api.helpers import loan_body, wait_state
from tests.fixtures.redis import REDIS_URL
from tests.ops.stack import ops_stack
from workflows.loan_client import LoanClosed, signal_submitted

LOANS = 8
STORM = 120


async def storm(client: Any, loan_id: str, tx_hash: str) -> int:
    """Duplicate signals until the workflow closes, at most STORM of them (an endless storm
    could keep a workflow from ever completing: each completion would be refused)."""
    sent = 0
    with contextlib.suppress(LoanClosed):
        while sent < STORM:
            await asyncio.gather(
                *(signal_submitted(client, loan_id, Submitted(tx_hash=tx_hash)) for _ in range(4))
            )
            sent += 4
    return sent


async def test_loans_finished_counts_each_loan_once_under_signal_races(
    temporal_env: Any, devnet: Any
) -> None:
    redis = aioredis.from_url(REDIS_URL, decode_responses=True)
    pool = await deploy_pool(devnet.rpc_url, devnet.passphrase, liquidity=100 * UNIT)
    rpc, phrase = devnet.rpc_url, devnet.passphrase
    try:
        async with ops_stack(temporal_env, devnet, redis, pool) as stack:
            vendor = await new_funded_keypair(rpc)
            borrowers = await asyncio.gather(
                *(
                    new_funded_keypair(rpc, token_id=pool.token_id, token_amount=100 * UNIT)
                    for _ in range(LOANS)
                )
            )
            async with stack.http() as http:

                async def one(borrower: Any) -> int:
                    total = Decimal(5) * Decimal("1.25")
                    body = loan_body(
                        pool.pool_id,
                        borrower.public_key,
                        vendor.public_key,
                        total=format(total.normalize(), "f"),
                        guarantee=format((total - 5).normalize(), "f"),
                    )
                    opened = await http.post(
                        "/v1/loans", json=body, headers={"Idempotency-Key": f"x-{uuid.uuid4()}"}
                    )
                    assert opened.status_code == 201, opened.text
                    loan_id, funding = opened.json()["loan_id"], opened.json()["funding"]
                    signed = sign_envelope(funding["xdr"], borrower.secret, phrase)
                    sent = await http.post(
                        f"/v1/loans/{loan_id}/submit", json={"signed_xdr": signed}
                    )
                    assert sent.status_code == 202, sent.text
                    storming = asyncio.create_task(
                        storm(temporal_env.client, loan_id, funding["tx_hash"])
                    )
                    await wait_state(http, loan_id, {"funded"}, within=60)
                    return await storming  # ends when the workflow has closed

                signals = await asyncio.gather(*(one(b) for b in borrowers))
            await asyncio.sleep(1.5)  # the worker's next metrics export
            worker = await stack.scrape("worker")
            log = stack.logs("worker")
    finally:
        await redis.aclose()

    funded_lines = [
        line
        for line in (json.loads(raw) for raw in log.splitlines() if raw.strip())
        if line.get("state") == "funded" and line.get("message", "").startswith("loan funded")
    ]
    per_loan: dict[str, int] = {}
    for line in funded_lines:
        per_loan[line["loan_id"]] = per_loan.get(line["loan_id"], 0) + 1
    assert len(per_loan) == LOANS and sum(signals) > 0
    # the race this is about did happen: some loan's final task ran (and logged) twice
    assert sum(n - 1 for n in per_loan.values()) >= 1, per_loan
    assert worker.value("loans_finished_total", state="funded") == LOANS
    assert worker.value("loan_settlement_duration_seconds_count") == LOANS
