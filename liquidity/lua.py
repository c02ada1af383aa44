"""Loads the Lua scripts once per client. Each script is the shared prelude (_lib.lua) plus one
operation, called with EVALSHA and re-loaded on NOSCRIPT (e.g. after a Redis restart or SCRIPT
FLUSH), so the hot path is one EVALSHA round trip."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

from redis.exceptions import NoScriptError

from liquidity.connection import RedisClient

_DIR = Path(__file__).parent / "scripts"


@cache
def source(name: str) -> str:
    """The full text sent to Redis for one operation (prelude + body)."""
    lib = (_DIR / "_lib.lua").read_text()
    body = (_DIR / f"{name}.lua").read_text()
    return f"{lib}\n{body}"


class Script:
    """EVALSHA with a NOSCRIPT fallback. Thinner than redis-py's AsyncScript (no per-call
    import and pipeline check), which matters because the client, not Redis, bounds the rate."""

    def __init__(self, redis: RedisClient, text: str) -> None:
        self._redis = redis
        self._text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()

    async def __call__(self, keys: Sequence[str | bytes], args: Sequence[Any]) -> Any:
        """`args` travel as one NUL-separated argument (split by _lib.lua): packing each
        argument is the client's main cost, so fewer arguments means more operations/s."""
        packed = "\0".join(map(str, args))
        try:
            return await self._redis.evalsha(self.sha, len(keys), *keys, packed)
        except NoScriptError:
            self.sha = await self._redis.script_load(self._text)
            return await self._redis.evalsha(self.sha, len(keys), *keys, packed)

    async def call_then(
        self, keys: Sequence[str | bytes], args: Sequence[Any], follow: Sequence[Any]
    ) -> tuple[Any, Any]:
        """The script, then the keyless command `follow` (WAIT, INFO) on the SAME connection
        in one round trip: WAIT counts the replicas that acknowledged this connection's writes,
        and INFO must describe the server that ran this script, so a pool's two requests must
        never land on different connections. One node or Sentinel only (a cluster client routes a
        keyless command to any node)."""
        packed = "\0".join(map(str, args))
        for attempt in range(2):
            pipe = self._redis.pipeline(transaction=False)
            pipe.evalsha(self.sha, len(keys), *keys, packed)
            pipe.execute_command(*follow)
            reply, after = await pipe.execute(raise_on_error=False)
            if isinstance(reply, NoScriptError) and attempt == 0:
                self.sha = await self._redis.script_load(self._text)
                continue
            if isinstance(reply, Exception):
                raise reply
            if isinstance(after, Exception):
                raise after
            return reply, after
        raise AssertionError("unreachable")


class Scripts:
    def __init__(self, redis: RedisClient) -> None:
        self.reserve: Script = Script(redis, source("reserve"))
        self.commit: Script = Script(redis, source("commit"))
        self.release: Script = Script(redis, source("release"))
        self.sweep: Script = Script(redis, source("sweep"))
        self.snapshot: Script = Script(redis, source("snapshot"))
        self.restore: Script = Script(redis, source("restore"))
        self.freeze: Script = Script(redis, source("freeze"))
        self.status: Script = Script(redis, source("status"))
        self.reservations: Script = Script(redis, source("reservations"))
        self.suspect: Script = Script(redis, source("suspect"))
