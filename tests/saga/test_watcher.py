"""The watcher's own contract, one pass at a time: a settlement is consumed in the ledger before
the snapshot that contains it is applied, so the funded amount is never counted twice (once in
the chain's figures, once as a still-active reservation) — which would refuse fundable loans."""

from __future__ import annotations

import hashlib
import uuid

from stellar_sdk import StrKey

from chain.types import TxStatus
from core.models import LoanOffer, LoanState
from core.money import UNIT
from devnet.kit import wait_for_tx
from liquidity.tx_index import TxIndex
from reconcile.reconciler import establish_pool
from settlement.watcher import SettlementWatcher, contract_groups
from tests.saga.helpers import open_test_loan, signed, terms_for, wait_state


async def landed_loan(stack, pool, new_borrower, funded: int) -> tuple[str, TxStatus]:
    """A loan opened on the saga, signed and settled on chain: what the watcher must find."""
    borrower, vendor = await new_borrower(pool), await new_borrower()
    loan_id, offer = await open_test_loan(
        stack.client,
        stack.task_queue,
        pool_id=pool.pool_id,
        creditline_id=pool.creditline_id,
        terms=terms_for(borrower.public_key, vendor.public_key, funded),
    )
    assert isinstance(offer, LoanOffer)
    sent = await stack.chain.submit(
        signed(offer, borrower.secret, stack.settings.network_passphrase)
    )
    landed = await wait_for_tx(stack.chain, sent.tx_hash, timeout=15)
    assert landed.status == "success", landed
    return loan_id, landed


async def test_one_pass_commits_then_applies_the_snapshot(saga_stack, deploy_pool, new_borrower):
    stack = saga_stack
    pool = await deploy_pool(liquidity=100 * UNIT)
    # Established but NOT given to the session watcher: this test runs the passes itself.
    await establish_pool(stack.ledger, stack.chain, pool.pool_id)
    loan_id, landed = await landed_loan(stack, pool, new_borrower, 30 * UNIT)
    before = await stack.ledger.status(pool.pool_id)
    assert (before.reserved, before.available) == (30 * UNIT, 70 * UNIT)

    settings = stack.settings.model_copy(update={"pools": {pool.pool_id: pool.creditline_id}})
    watcher = SettlementWatcher(
        settings=settings,
        client=stack.client,
        chain=stack.chain,
        ledger=stack.ledger,
        # Same tx map as the saga, own cursor: the session watcher's position is not disturbed.
        tx_index=TxIndex(stack.redis, prefix=stack.redis_prefix, cursor_name=uuid.uuid4().hex),
    )
    await watcher.step()

    after = await stack.ledger.status(pool.pool_id)
    assert after.snapshot_ledger >= landed.ledger  # the pass applied a snapshot containing it
    assert after.chain_available == 70 * UNIT
    assert (after.reserved, after.pending_commits) == (0, 0)
    assert after.available == 70 * UNIT  # not 40: the funded amount counts once
    assert watcher.signals_sent == 1
    view = await wait_state(stack.client, loan_id, LoanState.FUNDED)
    assert view.settled_ledger == landed.ledger

    await watcher.step()  # a second pass finds nothing new and changes nothing
    assert (await stack.ledger.status(pool.pool_id)).available == 70 * UNIT


async def test_more_pools_than_one_rpc_request_can_follow(saga_stack, deploy_pool, new_borrower):
    """Soroban RPC takes at most 25 contracts per getEvents request (the devnet enforces it too):
    with 13 pools (26 contracts) the watcher splits them into groups and still sees the
    settlement of the pool that falls in the second group."""
    stack = saga_stack
    pool = await deploy_pool(liquidity=100 * UNIT)
    await establish_pool(stack.ledger, stack.chain, pool.pool_id)
    # Twelve quiet pools (no events) whose ids sort before the real one, so that the real pool
    # falls in the second group.
    quiet: dict[str, str] = {}
    for n in range(1_000_000):
        candidate = StrKey.encode_contract(hashlib.sha256(b"quiet-pool-%d" % n).digest())
        if candidate < pool.pool_id:
            quiet[candidate] = StrKey.encode_contract(hashlib.sha256(b"quiet-cl-%d" % n).digest())
            if len(quiet) == 12:
                break
    pools = {**quiet, pool.pool_id: pool.creditline_id}
    groups = contract_groups(pools)
    assert len(groups) == 2 and pool.pool_id in groups[1], groups

    loan_id, landed = await landed_loan(stack, pool, new_borrower, 10 * UNIT)

    tx_index = TxIndex(stack.redis, prefix=stack.redis_prefix, cursor_name=uuid.uuid4().hex)
    watcher = SettlementWatcher(
        settings=stack.settings.model_copy(update={"pools": pools}),
        client=stack.client,
        chain=stack.chain,
        ledger=stack.ledger,
        tx_index=tx_index,
    )
    await watcher.step()
    assert watcher.signals_sent == 1
    view = await wait_state(stack.client, loan_id, LoanState.FUNDED)
    assert view.settled_ledger == landed.ledger
    assert landed.ledger is not None
    assert int(await tx_index.cursor() or 0) >= landed.ledger  # resumes after it next time
