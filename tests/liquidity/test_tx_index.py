"""The funding index's claim: one sequence per open funding transaction, and a hash mapped to its
loan only when the claim is that loan's (what the watcher relies on to signal the right loan)."""

from __future__ import annotations

import time

import redis.asyncio as aioredis

from liquidity.tx_index import TxIndex, TxRef

ACCOUNT = "GBORROWER"


def ref(loan_id: str, tx_hash: str) -> TxRef:
    return TxRef(tx_hash=tx_hash, loan_id=loan_id, pool_id="pool", expires_at=int(time.time()))


async def test_a_claim_maps_the_hash_and_repeats_are_idempotent(
    redis_client: aioredis.Redis, key_prefix: str
) -> None:
    index = TxIndex(redis_client, prefix=key_prefix)
    until = int(time.time()) + 60
    first = ref("loan-a", "aa" * 32)
    assert await index.claim_funding(first, account=ACCOUNT, sequence=7, until=until) == "loan-a"
    assert await index.claim_funding(first, account=ACCOUNT, sequence=7, until=until) == "loan-a"
    assert await index.lookup(first.tx_hash) == first


async def test_a_held_sequence_refuses_another_loan_and_leaves_its_hash_unmapped(
    redis_client: aioredis.Redis, key_prefix: str
) -> None:
    index = TxIndex(redis_client, prefix=key_prefix)
    until = int(time.time()) + 60
    await index.claim_funding(ref("loan-a", "aa" * 32), account=ACCOUNT, sequence=7, until=until)
    rival = ref("loan-b", "bb" * 32)
    assert await index.claim_funding(rival, account=ACCOUNT, sequence=7, until=until) == "loan-a"
    assert await index.lookup(rival.tx_hash) is None
    # Another sequence of the same account is free.
    assert await index.claim_funding(rival, account=ACCOUNT, sequence=8, until=until) == "loan-b"


async def test_releasing_a_claim_frees_the_sequence_for_the_next_loan(
    redis_client: aioredis.Redis, key_prefix: str
) -> None:
    index = TxIndex(redis_client, prefix=key_prefix)
    until = int(time.time()) + 60
    await index.claim_funding(ref("loan-a", "aa" * 32), account=ACCOUNT, sequence=7, until=until)
    await index.release_claim("loan-a")
    nxt = ref("loan-b", "bb" * 32)
    assert await index.claim_funding(nxt, account=ACCOUNT, sequence=7, until=until) == "loan-b"
    assert await index.lookup(nxt.tx_hash) == nxt
