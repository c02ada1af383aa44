"""The API process under faults a client meets over real HTTP (issue 13): an unexpected error
answers a 500 in the error shape on a connection that stays usable, with the request id its log
line carries; a 50 MB body is refused with 413 before it is read, whatever its framing, and the
API's memory does not grow. The API, worker and watcher are real subprocesses (tests/ops/stack)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from core.money import UNIT
from devnet.kit import deploy_pool
from liquidity.ledger import Ledger
from tests.api.helpers import assert_error
from tests.fixtures.redis import REDIS_URL
from tests.ops.stack import OpsStack, ops_stack

BODY_LIMIT = 1_048_576  # the default
HUGE = 50 * 1024 * 1024


@pytest.fixture(scope="module")
async def stack(temporal_env: Any, devnet: Any) -> AsyncIterator[OpsStack]:
    redis = aioredis.from_url(REDIS_URL, decode_responses=True)
    pool = await deploy_pool(devnet.rpc_url, devnet.passphrase, liquidity=100 * UNIT)
    try:
        async with ops_stack(temporal_env, devnet, redis, pool) as running:
            yield running
    finally:
        await redis.aclose()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def log_lines(stack: OpsStack, process: str) -> list[dict[str, Any]]:
    lines = []
    for raw in stack.logs(process).splitlines():
        try:
            lines.append(json.loads(raw))
        except ValueError:
            continue
    return lines


def local_port(response: httpx.Response) -> int:
    """The client side of the TCP connection the response came on."""
    stream = response.extensions["network_stream"]
    port: int = stream.get_extra_info("client_addr")[1]
    return port


# ---- defect 5: an unexpected error -------------------------------------------------------------


async def test_unexpected_error_is_a_500_on_a_connection_that_stays_usable(
    stack: OpsStack,
) -> None:
    """A real fault the code does not foresee: the pool's audit stream key holds a string
    (WRONGTYPE from Redis), so reading the audit raises something no handler expects."""
    redis = aioredis.from_url(REDIS_URL, decode_responses=True)
    audit_key = Ledger(redis, prefix=stack.settings.ledger_prefix).keys(stack.pool.pool_id).audit
    saved = await redis.dump(audit_key)
    await redis.delete(audit_key)
    await redis.set(audit_key, "not a stream")
    try:
        async with httpx.AsyncClient(
            base_url=stack.api_url,
            timeout=10,
            headers={"Authorization": f"Bearer {stack.api_key}"},
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        ) as http:
            before = await http.get("/healthz")
            assert before.status_code == 200
            failed = await http.get(f"/v1/pools/{stack.pool.pool_id}/audit")
            details = assert_error(failed, 500, "internal_error")
            request_id = details["request_id"]
            assert request_id and failed.headers["x-request-id"] == request_id
            assert failed.headers.get("connection", "").lower() != "close"
            after = await http.get(f"/v1/pools/{stack.pool.pool_id}/liquidity")
            assert after.status_code == 200, after.text
            # the same TCP connection carried all three answers
            assert local_port(before) == local_port(failed) == local_port(after)
    finally:
        await redis.delete(audit_key)
        if saved is not None:
            await redis.restore(audit_key, 0, saved)
        await redis.aclose()

    deadline = time.monotonic() + 5
    while True:
        lines = [line for line in log_lines(stack, "api") if line.get("request_id") == request_id]
        errors = [line for line in lines if line.get("level") == "ERROR"]
        if errors or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert errors, lines  # the error's own line, with its traceback, carries the id
    assert "WRONGTYPE" in json.dumps(errors[0]), errors[0]
    assert any(line.get("status") == 500 for line in lines), lines  # and the access line


# ---- defect 6: the body limit ------------------------------------------------------------------


def _request_head(stack: OpsStack, framing: str) -> bytes:
    host = stack.api_url.removeprefix("http://")
    lines = [
        "POST /v1/loans HTTP/1.1",
        f"Host: {host}",
        f"Authorization: Bearer {stack.api_key}",
        f"Idempotency-Key: huge-{uuid.uuid4()}",
        "Content-Type: application/json",
        framing,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _send_huge(stack: OpsStack, *, chunked: bool) -> tuple[int, bytes, int, float]:
    """Sends a 50 MB JSON body from one thread while this one reads the answer; returns (status,
    the raw answer, bytes of body sent when the answer came, seconds until it came). Plain
    sockets: the server closes while the client still sends, and an asyncio stream would
    then hide the answer it already received behind the write's ECONNRESET."""
    host, port = stack.api_url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=20)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {HUGE}"
    sock.sendall(_request_head(stack, framing))
    piece = b'{"pool_id": "' + b"x" * (64 * 1024 - 14)
    sent = 0
    stop = threading.Event()

    def pump() -> None:
        nonlocal sent
        try:
            while sent < HUGE and not stop.is_set():
                data = piece if sent == 0 else b"x" * len(piece)
                sock.sendall(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
                sent += len(data)
            if chunked and not stop.is_set():
                sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server closed after refusing: expected

    started = time.monotonic()
    sender = threading.Thread(target=pump, daemon=True)
    sender.start()
    answer = bytearray()
    elapsed = sent_then = None
    try:
        while True:
            try:
                data = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not data:
                break
            if elapsed is None:
                elapsed, sent_then = time.monotonic() - started, sent
            answer += data
            head, sep, body = bytes(answer).partition(b"\r\n\r\n")
            if sep and b"content-length:" in head.lower():
                length = int(head.lower().split(b"content-length:", 1)[1].split(b"\r\n")[0])
                if len(body) >= length:
                    break
    finally:
        stop.set()
        sock.close()
        sender.join(timeout=10)
    assert elapsed is not None and sent_then is not None, "no answer"
    return int(answer.split(b" ", 2)[1]), bytes(answer), sent_then, elapsed


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_a_50_mb_body_is_refused_before_it_is_read(stack: OpsStack, chunked: bool) -> None:
    pid = stack.procs["api"].pid
    baseline = rss_kib(pid)
    status, answer, sent, elapsed = await asyncio.to_thread(_send_huge, stack, chunked=chunked)
    assert status == 413, answer[:500]
    body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert body["error"]["code"] == "payload_too_large", body
    assert body["error"]["details"]["max_bytes"] == BODY_LIMIT
    assert b"x-request-id:" in answer.lower()
    # Refused fast, long before the 50 MB went out (loopback socket buffers hold a few MB).
    assert elapsed < 5, elapsed
    assert sent < 16 * 1024 * 1024, sent
    grown_mib = (rss_kib(pid) - baseline) / 1024
    assert grown_mib < 16, f"the API grew by {grown_mib:.1f} MiB"

    # A body under the limit is still read and judged on its content.
    async with stack.http() as http:
        small = await http.post(
            "/v1/loans",
            content=b"{",
            headers={"Idempotency-Key": f"k-{uuid.uuid4()}", "Content-Type": "application/json"},
        )
        assert_error(small, 400, "malformed_json")
