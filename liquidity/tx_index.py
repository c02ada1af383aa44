"""Funding transaction index on Redis: what the settlement watcher needs to turn chain facts into
loan signals, and where it resumes after a restart.

- `tx:<hash>` -> the loan a funding transaction belongs to (written before the XDR leaves the
  saga, so any settlement the watcher can see is already mapped);
- `txwatch` -> hashes relayed to the chain, polled with getTransaction because a *failed*
  transaction emits no contract event (scored by the Unix second after which polling is moot);
- `seq:<account>:<sequence>` -> the loan whose funding transaction uses that sequence number of
  the borrower's account until its max_time: two open transactions on one sequence can never
  both land (the second fails `txBAD_SEQ` after the borrower signed it), and identical terms in
  the same second would even share one hash, so a second claim is refused instead;
- `watcher:cursor` -> the ledger through which the watcher has handled every event, advanced only
  after a whole pass (at-least-once: a crash replays the pass, and every signal is idempotent).

Plain async Python over redis.asyncio: knows nothing of Temporal.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from liquidity.connection import get_many

# Kept after the transaction's expiry so a watcher that was down for a while can still map it.
_RETENTION_SECONDS = 7 * 24 * 3600

# Cluster-safe by design: every script names every key it touches, and each touches one key, so no
# script or transaction ever spans two slots. A claim is three single-key steps, ordered so that
# a crash between any two leaves nothing a retry or a release cannot clean up:
#   1. `seqof:<loan>` -> the sequence key the loan is about to claim (the release's way back);
#   2. `seq:<account>:<sequence>` claimed for the loan, or the owner returned (compare-and-set);
#   3. only if the claim is ours, `tx:<hash>` -> the loan.
# A release reads `seqof:<loan>` and deletes the sequence key only if it is still the loan's.

# KEYS: the sequence key; ARGV: loan id, claim expiry (Unix seconds). Returns the owner.
_CLAIM_SEQUENCE = """
local owner = redis.call('GET', KEYS[1])
if owner and owner ~= ARGV[1] then return owner end
if not owner then redis.call('SET', KEYS[1], ARGV[1], 'EXAT', ARGV[2]) end
return ARGV[1]
"""

# KEYS: the sequence key; ARGV: loan id. Deletes the sequence key only if still ours.
_RELEASE_SEQUENCE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _text(value: Any) -> str:
    """Accept clients with or without decode_responses."""
    return value.decode() if isinstance(value, bytes) else str(value)


class TxRef(BaseModel):
    tx_hash: str
    loan_id: str
    pool_id: str
    expires_at: int  # Unix seconds: the transaction's max_time


class TxIndex:
    def __init__(self, redis: Any, *, prefix: str = "liq", cursor_name: str = "watcher") -> None:
        """`cursor_name` separates the cursors of watchers sharing one index (tests)."""
        self._redis = redis
        self._prefix = prefix
        self._cursor_name = cursor_name
        self._claim_sequence = redis.register_script(_CLAIM_SEQUENCE)
        self._release_sequence = redis.register_script(_RELEASE_SEQUENCE)

    def _tx_key(self, tx_hash: str) -> str:
        return f"{self._prefix}:tx:{tx_hash}"

    @property
    def _watch_key(self) -> str:
        return f"{self._prefix}:txwatch"

    @property
    def _cursor_key(self) -> str:
        return f"{self._prefix}:{self._cursor_name}:cursor"

    async def claim_funding(self, ref: TxRef, *, account: str, sequence: int, until: int) -> str:
        """Claim `account`'s `sequence` for `ref.loan_id` until Unix second `until` and, if the
        claim is ours, map the funding hash to the loan. Returns the owner: the loan itself (new
        claim, or a repeat of ours: idempotent) or the loan that holds the sequence, in which case
        the hash stays unmapped. Three single-key round trips (see the module's step order)."""
        seq_key = f"{self._prefix}:seq:{account}:{sequence}"
        await self._redis.set(self._claim_of_key(ref.loan_id), seq_key, exat=until)
        owner = _text(await self._claim_sequence(keys=[seq_key], args=[ref.loan_id, until]))
        if owner == ref.loan_id:
            await self._redis.set(
                self._tx_key(ref.tx_hash), ref.model_dump_json(), ex=_RETENTION_SECONDS
            )
        return owner

    async def remap(self, ref: TxRef) -> bool:
        """Re-assert a hash's mapping that Redis may have lost (a failover, a flush): the open loan
        knows its own funding hash. True when it was missing. Never overwrites a mapping."""
        return bool(
            await self._redis.set(
                self._tx_key(ref.tx_hash), ref.model_dump_json(), ex=_RETENTION_SECONDS, nx=True
            )
        )

    async def release_claim(self, loan_id: str) -> None:
        """The loan gave its reservation back (cancelled, expired, failed): the borrower may open
        the next loan on the same sequence at once. Only the loan's own claim is dropped."""
        back = self._claim_of_key(loan_id)
        seq_key = await self._redis.get(back)
        if seq_key:
            await self._release_sequence(keys=[_text(seq_key)], args=[loan_id])
        await self._redis.delete(back)

    def _claim_of_key(self, loan_id: str) -> str:
        return f"{self._prefix}:seqof:{loan_id}"

    async def lookup(self, tx_hash: str) -> TxRef | None:
        raw = await self._redis.get(self._tx_key(tx_hash))
        return TxRef.model_validate_json(raw) if raw else None

    async def lookup_many(self, tx_hashes: list[str]) -> list[TxRef | None]:
        """`lookup` of many hashes in one round trip (the watcher maps a whole page at once)."""
        if not tx_hashes:
            return []
        raws = await get_many(self._redis, [self._tx_key(h) for h in tx_hashes])
        return [TxRef.model_validate_json(raw) if raw else None for raw in raws]

    async def watch(self, tx_hash: str, *, until: int) -> None:
        """Ask the watcher to poll this hash's result until `until` (Unix seconds)."""
        await self._redis.zadd(self._watch_key, {tx_hash: until})

    async def watched(self, limit: int = 500) -> list[tuple[str, int]]:
        rows = await self._redis.zrange(self._watch_key, 0, limit - 1, withscores=True)
        return [(_text(member), int(score)) for member, score in rows]

    async def unwatch(self, tx_hash: str) -> None:
        await self._redis.zrem(self._watch_key, tx_hash)

    async def cursor(self) -> str | None:
        value = await self._redis.get(self._cursor_key)
        return _text(value) if value else None

    async def set_cursor(self, cursor: str) -> None:
        await self._redis.set(self._cursor_key, cursor)
