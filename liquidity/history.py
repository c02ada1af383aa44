"""A short history of each pool's figures, for the dashboard's "last hour" chart.

One Redis stream per pool (`<prefix>:{pool}:history`, the pool's hash tag), written by the
active settlement watcher every `history_interval_seconds` and trimmed to the window, so it
costs a bounded few hundred entries per pool whatever the load. Stream ids are Redis time, so
the points of several writers over time (a watcher failover) line up. Knows no Temporal, no
HTTP."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from liquidity.keys import pool_keys
from liquidity.types import PoolStatus


class HistoryPoint(BaseModel):
    at_ms: int
    total: int
    locked: int
    reserved: int
    available: int
    pending: int
    frozen: bool


class LiquidityHistory:
    def __init__(self, redis: Any, *, prefix: str, window_ms: int = 3_600_000) -> None:
        self._redis = redis
        self._prefix = prefix
        self._window_ms = window_ms

    def key(self, pool_id: str) -> str:
        return pool_keys(self._prefix, pool_id).state.removesuffix("state") + "history"

    async def record(self, status: PoolStatus) -> None:
        key = self.key(status.pool_id)
        entry_id: str = await self._redis.xadd(
            key,
            {
                "total": status.total,
                "locked": status.locked,
                "reserved": status.reserved,
                "available": status.available,
                "pending": status.pending_commits,
                "frozen": int(status.frozen),
            },
        )
        now_ms = int(str(entry_id).split("-")[0])
        await self._redis.xtrim(key, minid=str(now_ms - self._window_ms), approximate=False)

    async def points(self, pool_id: str, *, limit: int = 2000) -> list[HistoryPoint]:
        """Oldest first, at most `limit` (the newest ones)."""
        rows = await self._redis.xrevrange(self.key(pool_id), count=limit)
        return [
            HistoryPoint(
                at_ms=int(str(entry_id).split("-")[0]),
                total=int(f["total"]),
                locked=int(f["locked"]),
                reserved=int(f["reserved"]),
                available=int(f["available"]),
                pending=int(f["pending"]),
                frozen=f["frozen"] == "1",
            )
            for entry_id, f in reversed(rows or [])
        ]
