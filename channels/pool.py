"""A pool of channel accounts: platform accounts that are the source, fee payer and sequence
owner of sponsored funding transactions, so borrowers need neither XLM nor a sequence number.

Rules, each for a reason:
- one transaction in flight per channel: a channel's next sequence number is only known once
  its previous transaction is final (applied, failed, or past its max_time), so a channel is
  leased from the build of a transaction until that transaction is final. The lease is a Redis
  hash per channel; a holder that crashed loses it by its expiry (max_time + grace);
- the next sequence is cached per channel (the account's sequence + 1 after each accepted
  submission); after `txBAD_SEQ` (someone else used the key, a transaction expired in the
  queue) it is read again from the chain and the transaction rebuilt, a bounded number of times;
- `TRY_AGAIN_LATER` is retried with exponential backoff, a bounded number of times;
- no channel free within the wait: `ChannelsBusy(retry_after)`, and nothing was built, signed
  or sent, so the caller's reservation is untouched.

Cluster-safe: every key is one channel's (`{prefix}:channel:{<account>}:lease` / `:seq`), and
every command or script touches exactly one key. Plain async Python: no Temporal, no HTTP."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from stellar_sdk import Keypair

from chain.client import ChainClient
from chain.errors import ChainRefusal, ChainUnavailable
from chain.types import FailureReason, SubmitResult

# KEYS: the lease; ARGV: token, expiry (Unix s). Takes the lease when nobody holds it.
_TAKE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'token', ARGV[1])
redis.call('EXPIREAT', KEYS[1], ARGV[2])
return 1
"""
# KEYS: the lease; ARGV: token, tx hash, max_time, expiry. Records the holder's transaction.
_RECORD = """
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'tx', ARGV[2], 'max_time', ARGV[3])
redis.call('EXPIREAT', KEYS[1], ARGV[4])
return 1
"""
# KEYS: the lease; ARGV: token. Gives the lease back if it is still this token's.
_GIVE_BACK = """
if redis.call('HGET', KEYS[1], 'token') == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class ChannelsBusy(Exception):
    """Every channel has a transaction in flight (or the chain keeps asking to try later)."""

    def __init__(self, retry_after: int, message: str) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Sent:
    """A transaction the chain accepted (PENDING or DUPLICATE) from `channel`."""

    tx_hash: str
    xdr: str
    channel: str
    sequence: int
    resyncs: int  # sequence reloads after txBAD_SEQ
    retries: int  # TRY_AGAIN_LATER answers waited out


@dataclass(frozen=True)
class Lease:
    account: str
    keypair: Keypair
    token: str


# (channel keypair, sequence) -> (signed envelope base64, tx hash hex)
Build = Callable[[Keypair, int], Awaitable[tuple[str, str]]]
# called with the tx hash after the build and before the submission (map it for the watcher)
Record = Callable[[str], Awaitable[None]]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class ChannelPool:
    def __init__(
        self,
        redis: Any,
        chain: ChainClient,
        secrets: list[str],
        *,
        prefix: str = "liq",
        wait_seconds: float = 2.0,
        try_again_attempts: int = 4,
        backoff_seconds: float = 0.25,
        max_resyncs: int = 2,
        grace_seconds: int = 30,
        build_seconds: int = 60,
    ) -> None:
        if not secrets:
            raise ValueError("a channel pool needs at least one channel account secret")
        self._redis = redis
        self._chain = chain
        self._channels = [Keypair.from_secret(s) for s in secrets]
        self._prefix = prefix
        self.wait_seconds = wait_seconds
        self.try_again_attempts = try_again_attempts
        self.backoff_seconds = backoff_seconds
        self.max_resyncs = max_resyncs
        self.grace_seconds = grace_seconds
        self.build_seconds = build_seconds  # a lease's life before it records a transaction
        self._take = redis.register_script(_TAKE)
        self._record = redis.register_script(_RECORD)
        self._give_back = redis.register_script(_GIVE_BACK)

    @property
    def accounts(self) -> list[str]:
        return [k.public_key for k in self._channels]

    def _lease_key(self, account: str) -> str:
        return f"{self._prefix}:channel:{{{account}}}:lease"

    def _seq_key(self, account: str) -> str:
        return f"{self._prefix}:channel:{{{account}}}:seq"

    # -- leases --------------------------------------------------------------------------------
    async def acquire(self, *, max_time: int, wait_seconds: float | None = None) -> Lease:
        """A free channel, waiting up to `wait_seconds` for one; ChannelsBusy otherwise. While
        none is free, channels whose transaction became final are freed on the way."""
        wait = self.wait_seconds if wait_seconds is None else wait_seconds
        deadline = time.monotonic() + wait
        delay = 0.05
        while True:
            lease = await self._try_take(max_time)
            if lease is not None:
                return lease
            if await self._free_finished() and (lease := await self._try_take(max_time)):
                return lease
            if time.monotonic() >= deadline:
                raise ChannelsBusy(
                    retry_after=max(1, round(wait) or 1),
                    message=f"all {len(self._channels)} channel accounts have a transaction "
                    "in flight",
                )
            await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 0.5)

    async def _try_take(self, max_time: int) -> Lease | None:
        order = list(self._channels)
        random.shuffle(order)
        token = uuid.uuid4().hex
        # a lease not yet recording a transaction lives as long as a build may take
        expiry = int(time.time()) + self.build_seconds
        for keypair in order:
            account = keypair.public_key
            if int(await self._take(keys=[self._lease_key(account)], args=[token, expiry])):
                return Lease(account, keypair, token)
        return None

    async def _free_finished(self) -> bool:
        """Free the channels whose recorded transaction is final; True if one was freed."""
        freed = False
        now = int(time.time())
        for keypair in self._channels:
            account = keypair.public_key
            lease = {
                _text(k): _text(v)
                for k, v in (await self._redis.hgetall(self._lease_key(account))).items()
            }
            tx_hash, token = lease.get("tx"), lease.get("token")
            if not tx_hash or not token:
                continue  # free already, or its holder is still building
            try:
                status = await self._chain.transaction(tx_hash)
            except ChainUnavailable:
                continue
            max_time = int(lease.get("max_time") or 0)
            if status.status == "not_found" and now <= max_time + 2:
                continue  # may still land
            if status.status == "not_found":
                # dropped without applying: the cached sequence was never consumed
                await self._redis.delete(self._seq_key(account))
            if int(await self._give_back(keys=[self._lease_key(account)], args=[token])):
                freed = True
        return freed

    async def release(self, lease: Lease) -> None:
        """Give a lease back whose transaction was never accepted by the chain."""
        await self._give_back(keys=[self._lease_key(lease.account)], args=[lease.token])

    async def finished(self, account: str, tx_hash: str) -> None:
        """The transaction `tx_hash` of `account` is final: free the channel now."""
        key = self._lease_key(account)
        lease = {_text(k): _text(v) for k, v in (await self._redis.hgetall(key)).items()}
        if lease.get("tx") == tx_hash and lease.get("token"):
            await self._give_back(keys=[key], args=[lease["token"]])

    # -- sequences -----------------------------------------------------------------------------
    async def _next_sequence(self, account: str, *, reload: bool = False) -> int:
        if not reload:
            cached = await self._redis.get(self._seq_key(account))
            if cached is not None:
                return int(_text(cached))
        return await self._chain.account_sequence(account) + 1

    # -- sending -------------------------------------------------------------------------------
    async def send(self, build: Build, *, max_time: int, record: Record | None = None) -> Sent:
        """Lease a channel, build the transaction at its next sequence, submit it; resync the
        sequence after txBAD_SEQ and wait out TRY_AGAIN_LATER, both bounded. Returns the
        accepted transaction (the channel stays leased until it is final). Raises
        ChannelsBusy (nothing sent), ChainRefusal (the chain said no; nothing consumed) or
        ChainUnavailable (the RPC did not answer; the lease keeps the transaction, so the
        channel is freed once it is found final or past its max_time)."""
        lease = await self.acquire(max_time=max_time)
        submitting: list[bool] = [False]
        try:
            return await self._send_on(
                lease, build, max_time=max_time, record=record, submitting=submitting
            )
        except ChainUnavailable:
            if not submitting[0]:
                await self.release(lease)
            # else the outcome is unknown: the lease keeps the hash until it is final
            raise
        except BaseException:
            await self.release(lease)
            raise

    async def _send_on(
        self,
        lease: Lease,
        build: Build,
        *,
        max_time: int,
        record: Record | None,
        submitting: list[bool],
    ) -> Sent:
        resyncs = retries = 0
        sequence = await self._next_sequence(lease.account)
        while True:
            xdr, tx_hash = await build(lease.keypair, sequence)
            if record is not None:
                await record(tx_hash)
            recorded = await self._record(
                keys=[self._lease_key(lease.account)],
                args=[lease.token, tx_hash, max_time, max_time + self.grace_seconds],
            )
            if not int(recorded):
                raise ChainUnavailable(f"lost the lease on channel {lease.account}")
            submitting[0] = True
            sent = await self._submit_with_backoff(xdr)
            submitting[0] = False
            retries += sent[1]
            result = sent[0]
            if result.status in ("pending", "duplicate"):
                await self._redis.set(
                    self._seq_key(lease.account), sequence + 1, exat=max_time + 86_400
                )
                return Sent(tx_hash, xdr, lease.account, sequence, resyncs, retries)
            if result.status == "try_again_later":
                raise ChannelsBusy(
                    retry_after=2, message="the chain keeps answering TRY_AGAIN_LATER"
                )
            if result.reason == FailureReason.BAD_SEQ and resyncs < self.max_resyncs:
                resyncs += 1
                sequence = await self._next_sequence(lease.account, reload=True)
                continue
            await self._redis.delete(self._seq_key(lease.account))
            raise ChainRefusal(result.reason or FailureReason.UNKNOWN, result.detail)

    async def _submit_with_backoff(self, xdr: str) -> tuple[SubmitResult, int]:
        delay = self.backoff_seconds
        for attempt in range(self.try_again_attempts + 1):
            result = await self._chain.submit(xdr)
            if result.status != "try_again_later" or attempt == self.try_again_attempts:
                return result, attempt
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay *= 2
        raise AssertionError("unreachable")
