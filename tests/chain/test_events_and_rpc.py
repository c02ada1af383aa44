"""getEvents as the watcher uses it, and the RPC surface unmodified stellar-sdk code relies on."""

from __future__ import annotations

from typing import Any

import aiohttp
from stellar_sdk import Keypair, SorobanServerAsync, StrKey, scval
from stellar_sdk import xdr as sx
from stellar_sdk.soroban_rpc import EventFilter, EventFilterType

from core.money import UNIT
from devnet.kit import create_loan_direct
from tests.chain.helpers import loan_terms


async def test_loan_events_by_topic_and_cursor(
    chain_client, deploy_pool, new_borrower, devnet
) -> None:
    start = await chain_client.latest_ledger()
    pool = await deploy_pool(liquidity=300 * UNIT)
    other = await deploy_pool(liquidity=300 * UNIT)  # its events must not leak into ours
    vendors = [Keypair.random().public_key for _ in range(3)]
    for vendor in vendors:
        borrower = await new_borrower(pool)
        status = await create_loan_direct(
            devnet.rpc_url,
            devnet.passphrase,
            pool.creditline_id,
            loan_terms(borrower.public_key, total=50 * UNIT, guarantee=10 * UNIT, vendor=vendor),
            borrower.secret,
        )
        assert status.status == "success"
    other_borrower = await new_borrower(other)
    await create_loan_direct(
        devnet.rpc_url,
        devnet.passphrase,
        other.creditline_id,
        loan_terms(other_borrower.public_key, total=50 * UNIT, guarantee=10 * UNIT),
        other_borrower.secret,
    )

    # page one LOANCRTD at a time from start_ledger, then by cursor
    seen, cursor, pages = [], None, 0
    page = await chain_client.events(
        [pool.pool_id, pool.creditline_id], start_ledger=start, limit=1, names=["LOANCRTD"]
    )
    while page.events:
        pages += 1
        seen.extend(page.events)
        cursor = page.cursor
        page = await chain_client.events(
            [pool.pool_id, pool.creditline_id], cursor=cursor, limit=1, names=["LOANCRTD"]
        )
    assert pages == 3
    assert [e.name for e in seen] == ["LOANCRTD"] * 3
    assert [e.data[0] for e in seen] == [1, 2, 3]  # loan ids, in ledger order
    assert [e.topics[1] for e in seen] == vendors
    assert {e.contract_id for e in seen} == {pool.creditline_id}
    assert [e.data[1:3] for e in seen] == [[50 * UNIT, 10 * UNIT]] * 3
    ids = [e.id for e in seen]
    assert ids == sorted(ids) and len(set(ids)) == 3

    # the pool's own events for the same loans, by another topic
    funded = await chain_client.events([pool.pool_id], start_ledger=start, names=["LQFUND"])
    assert [e.data[1] for e in funded.events] == [40 * UNIT] * 3
    assert {e.tx_hash for e in funded.events} == {e.tx_hash for e in seen}
    # both topics at once, and nothing from the other pool
    both = await chain_client.events(
        [pool.pool_id, pool.creditline_id],
        start_ledger=start,
        names=["LQDEPST", "LOANCRTD", "LQFUND"],
    )
    assert sorted(e.name for e in both.events) == ["LOANCRTD"] * 3 + ["LQDEPST"] + ["LQFUND"] * 3
    # a cursor at the end yields nothing new until something happens
    tail = await chain_client.events([pool.pool_id, pool.creditline_id], cursor=both.cursor)
    assert tail.events == []


async def test_raw_sdk_surface(deploy_pool, devnet) -> None:
    pool = await deploy_pool(liquidity=10 * UNIT)
    server = SorobanServerAsync(devnet.rpc_url)
    try:
        health = await server.get_health()
        assert health.status == "healthy"
        network = await server.get_network()
        assert network.passphrase == devnet.passphrase
        first = await server.get_latest_ledger()
        sx.LedgerHeader.from_xdr(first.header_xdr)  # a real header
        # ledgers close on the timer
        import asyncio

        await asyncio.sleep(1.2)
        assert (await server.get_latest_ledger()).sequence > first.sequence
        # accounts and contract data through getLedgerEntries
        lp = await server.load_account(pool.lp_public)
        assert lp.sequence > 0
        entry = await server.get_contract_data(
            pool.token_id,
            scval.to_vec([scval.to_symbol("Balance"), scval.to_address(pool.pool_id)]),
        )
        assert entry is not None
        value = scval.to_native(sx.LedgerEntryData.from_xdr(entry.xdr).contract_data.val)  # type: ignore[union-attr]
        assert isinstance(value, dict) and value["amount"] == 10 * UNIT
        instance = await server._get_contract_instance(pool.pool_id)
        assert instance is not None and instance.storage is not None
        storage = instance.storage.sc_map
        fields: dict[Any, Any] = {scval.to_native(e.key): scval.to_native(e.val) for e in storage}
        assert fields["TotalLiquidity"] == 10 * UNIT
        assert fields["CreditLine"].address == pool.creditline_id
        # getEvents with the sdk's own filter objects and the RPC's exact-length topic matching
        sym = scval.to_symbol("LQDEPST").to_xdr()
        resp = await server.get_events(
            start_ledger=1,
            filters=[
                EventFilter(
                    event_type=EventFilterType.CONTRACT,
                    contract_ids=[pool.pool_id],
                    topics=[[sym, "*"]],
                )
            ],
        )
        assert len(resp.events) == 1 and resp.events[0].contract_id == pool.pool_id
    finally:
        await server.close()


async def test_json_rpc_errors(devnet) -> None:
    async with aiohttp.ClientSession() as session:

        async def call(body: object) -> dict:
            async with session.post(devnet.rpc_url.rstrip("/") + "/rpc", json=body) as resp:
                return await resp.json()

        unknown = await call({"jsonrpc": "2.0", "id": 7, "method": "nope", "params": None})
        assert unknown["id"] == 7 and unknown["error"]["code"] == -32601
        bad = await call(
            {
                "jsonrpc": "2.0",
                "id": 8,
                "method": "sendTransaction",
                "params": {"transaction": "garbage"},
            }
        )
        assert bad["error"]["code"] == -32602
        too_far = await call(
            {
                "jsonrpc": "2.0",
                "id": 9,
                "method": "getEvents",
                "params": {"startLedger": 10**9, "filters": None, "pagination": None},
            }
        )
        assert "startLedger" in too_far["error"]["message"]
        missing = await call(
            {"jsonrpc": "2.0", "id": 10, "method": "getTransaction", "params": {"hash": "00" * 32}}
        )
        assert missing["result"]["status"] == "NOT_FOUND"
        # Soroban RPC's request limits: 5 filters, 5 contract ids per filter.
        ids = [StrKey.encode_contract(bytes(31) + bytes([i])) for i in range(6)]

        async def get_events(filters: list[dict]) -> dict:
            return await call(
                {
                    "jsonrpc": "2.0",
                    "id": 11,
                    "method": "getEvents",
                    "params": {"startLedger": 1, "filters": filters},
                }
            )

        too_many_filters = await get_events([{"type": "contract", "contractIds": [i]} for i in ids])
        assert too_many_filters["error"]["code"] == -32602
        assert "filters" in too_many_filters["error"]["message"]
        too_many_ids = await get_events([{"type": "contract", "contractIds": ids}])
        assert too_many_ids["error"]["code"] == -32602
        assert "contract IDs" in too_many_ids["error"]["message"]
        within = await get_events([{"type": "contract", "contractIds": ids[:5]}] * 5)
        assert within["result"]["events"] == []
