"""Loads the Lua scripts once per client. Each script is the shared prelude (_lib.lua) plus one
operation; redis-py's Script object calls EVALSHA and re-loads on NOSCRIPT (e.g. after a Redis
restart or SCRIPT FLUSH), so the hot path is one EVALSHA round trip."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

_DIR = Path(__file__).parent / "scripts"

NAMES = (
    "reserve", "commit", "release", "sweep", "snapshot", "restore", "freeze", "status",
    "reservations",
)


@cache
def source(name: str) -> str:
    """The full text sent to Redis for one operation (prelude + body)."""
    lib = (_DIR / "_lib.lua").read_text()
    body = (_DIR / f"{name}.lua").read_text()
    return f"{lib}\n{body}"


class Scripts:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.reserve: AsyncScript = redis.register_script(source("reserve"))
        self.commit: AsyncScript = redis.register_script(source("commit"))
        self.release: AsyncScript = redis.register_script(source("release"))
        self.sweep: AsyncScript = redis.register_script(source("sweep"))
        self.snapshot: AsyncScript = redis.register_script(source("snapshot"))
        self.restore: AsyncScript = redis.register_script(source("restore"))
        self.freeze: AsyncScript = redis.register_script(source("freeze"))
        self.status: AsyncScript = redis.register_script(source("status"))
        self.reservations: AsyncScript = redis.register_script(source("reservations"))
