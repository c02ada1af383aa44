"""Determinism of the sponsored path (FUNDING_MODE=sponsored): its main paths run on a worker
with max_cached_workflows=0 (every task replays the whole history) and their histories replay;
RECORD_HISTORIES=1 writes them to tests/histories/sponsored_loan_*.json, which
tests/saga/test_replay.py replays with every other recorded history.

Paths: funded (submitted, then settled), funded with the watcher's settlement arriving before
the API's `submitted` signal (kept until the hash is known), expired without a signed entry (no
hash to ask the chain about), cancelled after a refused entry."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path
from typing import Any

from stellar_sdk import Keypair
from stellar_sdk.auth import authorize_entry
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from chain.sponsored import check_signed_entry
from channels.pool import ChannelPool
from core.models import Cancel, LoanOffer, LoanState, Submitted
from core.money import UNIT
from devnet.kit import fund_account, wait_for_tx
from liquidity.tx_index import TxRef
from runtime.worker import build_worker
from tests.fixtures.devnet import BORROWER_TOKENS, LEDGER_INTERVAL
from tests.fixtures.temporal import running_saga_stack
from tests.saga.helpers import open_test_loan, terms_for, wait_view
from workflows.loan import LoanWorkflow
from workflows.loan_client import loan_handle, signal_cancel, signal_submitted

HISTORIES = Path(__file__).resolve().parents[1] / "histories"


async def _has_signal(client: Client, loan_id: str, name: str) -> bool:
    history = await loan_handle(client, loan_id).fetch_history()
    return any(
        e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
        and e.workflow_execution_signaled_event_attributes.signal_name == name
        for e in history.events
    )


async def test_sponsored_paths_on_an_uncached_worker_and_replay(
    temporal_env: Any, devnet: Any, deploy_pool: Any
) -> None:
    channels = [Keypair.random() for _ in range(2)]
    await asyncio.gather(*(fund_account(devnet.rpc_url, c.public_key) for c in channels))
    async with running_saga_stack(
        temporal_env,
        devnet,
        funding_mode="sponsored",
        channel_secrets=",".join(c.secret for c in channels),
        ledger_seconds=LEDGER_INTERVAL,
    ) as stack:
        pool = await deploy_pool(liquidity=100 * UNIT)
        await stack.add_pool(pool)
        channel_pool = ChannelPool(
            stack.redis, stack.chain, [c.secret for c in channels], prefix=stack.redis_prefix
        )
        passphrase = stack.settings.network_passphrase
        task_queue = f"nocache-{uuid.uuid4().hex[:8]}"
        worker = build_worker(
            stack.client, stack.clients, task_queue=task_queue, max_cached_workflows=0
        )

        async def open_(ttl: int | None = None) -> tuple[str, LoanOffer, Keypair]:
            borrower = Keypair.random()
            await fund_account(
                devnet.rpc_url,
                borrower.public_key,
                xlm=0,
                token_id=pool.token_id,
                token_amount=BORROWER_TOKENS,
            )
            loan_id, offer = await open_test_loan(
                stack.client,
                task_queue,
                pool_id=pool.pool_id,
                creditline_id=pool.creditline_id,
                terms=terms_for(borrower.public_key, Keypair.random().public_key, 5 * UNIT),
                ttl_seconds=ttl,
            )
            assert isinstance(offer, LoanOffer), offer
            assert offer.funding.mode == "sponsored" and offer.funding.auth_entry
            return loan_id, offer, borrower

        async def send(loan_id: str, offer: LoanOffer, borrower: Keypair) -> str:
            """What POST /submit does: check, assemble on a channel, map, submit."""
            funding = offer.funding
            signed = authorize_entry(
                funding.auth_entry, borrower, funding.valid_until_ledger, passphrase
            ).to_xdr()
            entry = check_signed_entry(funding.auth_entry, signed, borrower.public_key, passphrase)

            async def build(channel: Keypair, sequence: int) -> tuple[str, str]:
                return await stack.chain.assemble_sponsored(
                    channel=channel,
                    sequence=sequence,
                    signed_entry=entry,
                    max_time=funding.expires_at,
                )

            async def record(tx_hash: str) -> None:
                await stack.tx_index.remap(
                    TxRef(
                        tx_hash=tx_hash,
                        loan_id=loan_id,
                        pool_id=pool.pool_id,
                        expires_at=funding.expires_at,
                    )
                )

            for _ in range(100):
                try:
                    sent = await channel_pool.send(
                        build, max_time=funding.expires_at, record=record
                    )
                    return sent.tx_hash
                except Exception as exc:  # ChannelsBusy: both channels in flight
                    if type(exc).__name__ != "ChannelsBusy":
                        raise
                    await asyncio.sleep(0.2)
            raise AssertionError("no channel")

        loans: dict[str, str] = {}
        async with worker:
            loan_id, offer, borrower = await open_()
            loans["funded"] = loan_id
            tx_hash = await send(loan_id, offer, borrower)
            await signal_submitted(stack.client, loan_id, Submitted(tx_hash=tx_hash))

            loan_id, offer, borrower = await open_()
            loans["funded_early"] = loan_id
            tx_hash = await send(loan_id, offer, borrower)
            assert (await wait_for_tx(stack.chain, tx_hash, 15)).status == "success"
            deadline = time.monotonic() + 20
            while not await _has_signal(stack.client, loan_id, "settled"):
                assert time.monotonic() < deadline, "the watcher never signalled"
                await asyncio.sleep(0.2)
            await signal_submitted(stack.client, loan_id, Submitted(tx_hash=tx_hash))

            loan_id, offer, borrower = await open_(ttl=5)
            loans["expired"] = loan_id

            loan_id, offer, borrower = await open_()
            loans["entry_refused"] = loan_id
            await signal_cancel(
                stack.client, loan_id, Cancel(reason="signed entry refused: not_signed_by_borrower")
            )

            expected = {
                "funded": LoanState.FUNDED,
                "funded_early": LoanState.FUNDED,
                "expired": LoanState.EXPIRED,
                "entry_refused": LoanState.CANCELLED,
            }
            for name, loan_id in loans.items():
                view = await wait_view(stack.client, loan_id, within=40)
                assert view.state == expected[name], (name, view)
            for loan_id in loans.values():
                handle = loan_handle(stack.client, loan_id)
                for _ in range(50):
                    if (await handle.describe()).close_time is not None:
                        break
                    await asyncio.sleep(0.1)
        status = await stack.ledger.status(pool.pool_id)
        assert (status.reserved, status.active_reservations) == (0, 0)
        replayer = Replayer(workflows=[LoanWorkflow], data_converter=pydantic_data_converter)
        record = os.environ.get("RECORD_HISTORIES") == "1"
        for name, loan_id in loans.items():
            history = await loan_handle(stack.client, loan_id).fetch_history()
            await replayer.replay_workflow(history)
            if record:
                (HISTORIES / f"sponsored_loan_{name}.json").write_text(history.to_json())
