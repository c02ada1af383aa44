"""Crashes: the worker SIGKILLed between reserve and settlement, the watcher SIGKILLed while a
settlement lands. Both run as real subprocesses (`python worker.py` / `python watcher.py`) on their
own task queue and Redis prefix, so the session's in-process worker and watcher cannot help."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from core.models import LoanOffer, LoanState, Submitted
from core.money import UNIT
from devnet.kit import wait_for_tx
from liquidity.ledger import Ledger
from liquidity.tx_index import TxIndex
from runtime.clients import Clients
from tests.fixtures.redis import delete_prefix
from tests.fixtures.temporal import register_pool, stack_settings
from tests.saga.helpers import open_test_loan, signed, terms_for, wait_state
from tests.saga.procs import Proc
from workflows.loan_client import loan_view, signal_submitted


@dataclass
class Isolated:
    settings: Any
    ledger: Ledger
    tx_index: TxIndex
    pool: Any
    procs: list[Proc]

    def spawn(self, script: str, **env: str) -> Proc:
        proc = Proc(script, self.settings, env)
        self.procs.append(proc)
        return proc


@pytest.fixture
async def isolated(saga_stack, devnet, deploy_pool) -> AsyncIterator[Isolated]:
    prefix = f"test-crash-{uuid.uuid4().hex[:10]}"
    settings = stack_settings(
        saga_stack.settings.temporal_address,
        devnet,
        prefix=prefix,
        task_queue=f"crash-{uuid.uuid4().hex[:8]}",
    )
    clients = Clients.build(settings, saga_stack.redis, saga_stack.chain)
    pool = await deploy_pool(liquidity=100 * UNIT)
    # Registered only in this isolated settings: the session watcher does not follow this pool.
    await register_pool(settings, clients.ledger, saga_stack.chain, pool)
    iso = Isolated(settings, clients.ledger, clients.tx_index, pool, [])
    try:
        yield iso
    finally:
        for proc in iso.procs:
            proc.stop()
            print(f"---- {proc.proc.args!r} (pid {proc.pid})\n{proc.log()[-3000:]}")  # on failure
        await delete_prefix(saga_stack.redis, prefix)


async def open_in(stack, iso: Isolated, borrower, vendor, funded: int, ttl: int | None = None):
    return await open_test_loan(
        stack.client,
        iso.settings.task_queue,
        pool_id=iso.pool.pool_id,
        creditline_id=iso.pool.creditline_id,
        terms=terms_for(borrower.public_key, vendor.public_key, funded),
        ttl_seconds=ttl,
    )


async def test_worker_killed_between_reserve_and_settlement(saga_stack, isolated, new_borrower):
    stack, iso = saga_stack, isolated
    iso.spawn("watcher.py")
    worker = iso.spawn("worker.py")
    borrower, idle, vendor = (
        await new_borrower(iso.pool),
        await new_borrower(iso.pool),
        await new_borrower(),
    )
    loan_id, offer = await open_in(stack, iso, borrower, vendor, 30 * UNIT)
    idle_id, idle_offer = await open_in(stack, iso, idle, vendor, 20 * UNIT, ttl=2)
    assert isinstance(offer, LoanOffer) and isinstance(idle_offer, LoanOffer)
    assert (await iso.ledger.status(iso.pool.pool_id)).reserved == 50 * UNIT

    worker.kill()
    # While no worker runs: the borrower signs and submits, the chain settles, the watcher
    # signals (the server keeps the signals), and the idle loan's hold passes.
    sent = await stack.chain.submit(signed(offer, borrower.secret, iso.settings.network_passphrase))
    await signal_submitted(stack.client, loan_id, Submitted(tx_hash=sent.tx_hash))
    landed = await wait_for_tx(stack.chain, sent.tx_hash, timeout=15)
    assert landed.status == "success", landed
    # The watcher has consumed the settled reservation although no workflow could run: the
    # chain's figures and the ledger never count the funded amount twice.
    for _ in range(50):
        if (await iso.ledger.status(iso.pool.pool_id)).reserved == 20 * UNIT:
            break
        await asyncio.sleep(0.1)
    await iso.ledger.apply_snapshot(iso.pool.pool_id, **await chain_figures(stack, iso))
    status = await iso.ledger.status(iso.pool.pool_id)
    assert status.reserved == 20 * UNIT and status.available == 50 * UNIT, status
    await asyncio.sleep(4)  # idle loan: ttl 2 s + grace 2 s

    iso.spawn("worker.py")
    view = await wait_state(stack.client, loan_id, LoanState.FUNDED, within=60)
    assert view.settled_ledger == landed.ledger
    await wait_state(stack.client, idle_id, LoanState.EXPIRED, within=60)
    status = await iso.ledger.status(iso.pool.pool_id)
    assert (status.reserved, status.active_reservations) == (0, 0)  # nothing leaked
    commits = [e for e in await iso.ledger.audit(iso.pool.pool_id) if e.action == "commit"]
    assert [e.loan_id for e in commits] == [loan_id]


async def test_watcher_killed_and_restarted_misses_no_settlement(
    saga_stack, isolated, new_borrower
):
    stack, iso = saga_stack, isolated
    iso.spawn("worker.py")
    watcher = iso.spawn("watcher.py")
    borrower, vendor = await new_borrower(iso.pool), await new_borrower()
    loan_id, offer = await open_in(stack, iso, borrower, vendor, 25 * UNIT)
    assert isinstance(offer, LoanOffer)
    for _ in range(100):  # the watcher has made a pass and saved its cursor
        if await iso.tx_index.cursor() is not None:
            break
        await asyncio.sleep(0.1)
    assert await iso.tx_index.cursor() is not None

    watcher.kill()
    sent = await stack.chain.submit(signed(offer, borrower.secret, iso.settings.network_passphrase))
    landed = await wait_for_tx(stack.chain, sent.tx_hash, timeout=15)
    assert landed.status == "success", landed
    await asyncio.sleep(1.5)
    # Nobody has told the loan yet (no submitted signal, watcher down).
    view = await loan_view(stack.client, loan_id)
    assert view is not None and view.state == LoanState.RESERVED

    iso.spawn("watcher.py")  # resumes from the cursor saved in Redis
    view = await wait_state(stack.client, loan_id, LoanState.FUNDED, within=30)
    assert view.settled_ledger == landed.ledger
    assert (await iso.ledger.status(iso.pool.pool_id)).reserved == 0


async def test_standby_watcher_takes_over_when_the_active_one_dies(
    saga_stack, isolated, new_borrower
):
    """Two watcher processes on one network: one holds the lease and works, the other stands
    by; SIGKILL the active one and the standby settles the loan within the lease TTL."""
    stack, iso = saga_stack, isolated
    iso.spawn("worker.py")
    watchers = {name: iso.spawn("watcher.py", WATCHER_ID=name) for name in ("w-a", "w-b")}
    lease_key = f"{iso.settings.ledger_prefix}:watcher:lease"
    for _ in range(600):  # both processes import and start first: slow on a loaded machine
        active = await stack.redis.get(lease_key)
        if active:
            break
        await asyncio.sleep(0.1)
    assert active in watchers, active
    standby = next(name for name in watchers if name != active)
    for _ in range(150):  # the standby's first pass (its process may still be importing)
        if "is standing by" in watchers[standby].log():
            break
        await asyncio.sleep(0.1)
    assert "is standing by" in watchers[standby].log()
    await asyncio.sleep(1.5)  # several more passes: the standby keeps standing by
    assert await stack.redis.get(lease_key) == active
    assert "is active" not in watchers[standby].log()

    watchers[active].kill()
    borrower, vendor = await new_borrower(iso.pool), await new_borrower()
    loan_id, offer = await open_in(stack, iso, borrower, vendor, 15 * UNIT)
    sent = await stack.chain.submit(signed(offer, borrower.secret, iso.settings.network_passphrase))
    landed = await wait_for_tx(stack.chain, sent.tx_hash, timeout=15)
    assert landed.status == "success", landed

    view = await wait_state(stack.client, loan_id, LoanState.FUNDED, within=30)
    assert view.settled_ledger == landed.ledger
    assert await stack.redis.get(lease_key) == standby
    assert "is active" in watchers[standby].log()


async def chain_figures(stack, iso: Isolated) -> dict[str, int]:
    stats = await stack.chain.pool_stats(iso.pool.pool_id)
    return {
        "ledger": stats.ledger,
        "total": stats.total_liquidity,
        "locked": stats.locked_liquidity,
        "available": stats.available_liquidity,
    }
