"""The watcher lease: exactly one holder among concurrent contenders, renewal by the holder only,
takeover after the holder's TTL or release."""

import asyncio

from liquidity.lease import Lease


async def test_one_holder_among_concurrent_contenders(redis_client, key_prefix):
    key = f"{key_prefix}:lease"
    leases = [Lease(redis_client, key, holder=f"w{i}", ttl_ms=5_000) for i in range(20)]
    held = await asyncio.gather(*(lease.hold() for lease in leases))
    assert sum(held) == 1
    winner = leases[held.index(True)]
    assert await winner.owner() == winner.holder
    # The holder renews; the others still stand by.
    assert await winner.hold()
    assert not any(await asyncio.gather(*(x.hold() for x in leases if x is not winner)))


async def test_standby_takes_over_after_ttl(redis_client, key_prefix):
    key = f"{key_prefix}:lease"
    first = Lease(redis_client, key, holder="first", ttl_ms=200)
    second = Lease(redis_client, key, holder="second", ttl_ms=200)
    assert await first.hold()
    assert not await second.hold()
    await asyncio.sleep(0.3)  # the first holder stopped renewing (crashed or paused)
    assert await second.hold()
    assert not await first.hold()  # a late renewal cannot steal it back
    assert await second.owner() == "second"


async def test_release_hands_over_at_once_and_only_by_the_holder(redis_client, key_prefix):
    key = f"{key_prefix}:lease"
    first = Lease(redis_client, key, holder="first", ttl_ms=60_000)
    second = Lease(redis_client, key, holder="second", ttl_ms=60_000)
    assert await first.hold()
    await second.release()  # not the holder: no effect
    assert await first.owner() == "first"
    await first.release()
    assert await second.hold()
