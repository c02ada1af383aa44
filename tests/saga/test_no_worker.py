"""Issue 13, defect 3: reads and opens must not depend on a live worker.

Real processes on their own Temporal dev server and devnet (so pausing them touches no other
test): `worker.py`, `watcher.py` and the API (`uvicorn api.app:app`) as subprocesses, the only
worker paused with SIGSTOP / resumed with SIGCONT by its PID.

The dev server's long poll is shortened to 5 s (`matching.longPollExpirationInterval`) so that
/readyz's staleness bound can be 8 s here instead of 75 s: an idle worker re-polls every 5 s.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from stellar_sdk import Keypair
from temporalio.api.enums.v1 import PendingWorkflowTaskState
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from api.auth.keys import ApiKeyStore
from api.auth.principal import SCOPES
from chain.client import ChainClient
from chain.envelope import sign_envelope
from core.money import UNIT
from devnet.kit import DeployedPool, deploy_pool, new_funded_keypair, wait_for_tx
from liquidity.ledger import Ledger
from runtime.clients import Clients
from tests.api.conftest import ADMIN_TOKEN, JWT_SECRET, SEP10_KEYPAIR
from tests.api.helpers import assert_error, loan_body, stroops
from tests.fixtures.devnet import BORROWER_TOKENS, DevnetProcess, running_devnet
from tests.fixtures.redis import delete_prefix
from tests.fixtures.temporal import register_pool, stack_settings, temporal_cli
from tests.saga.procs import Proc
from tests.saga.test_replay import HISTORIES, replayer
from tests.saga.test_scale_out import ApiProc
from workflows.loan_client import loan_handle
from workflows.search_attributes import LOAN_SEARCH_ATTRIBUTES

OPEN_WAIT_S = 6.0  # the open's bound; generous: a loaded machine delays even a live worker
STALENESS_S = 8.0
LONG_POLL_S = 5


@dataclass
class Outage:
    settings: Any
    client: Client
    chain: ChainClient
    ledger: Ledger
    pool: DeployedPool
    api: ApiProc
    auth: dict[str, str]
    workers: list[Proc] = field(default_factory=list)

    def spawn_worker(self) -> Proc:
        worker = Proc("worker.py", self.settings)
        self.workers.append(worker)
        return worker

    async def borrower(self) -> Keypair:
        return await new_funded_keypair(
            self.settings.rpc_url, token_id=self.pool.token_id, token_amount=BORROWER_TOKENS
        )

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.api.url, timeout=60, headers=self.auth)


def pause(proc: Proc) -> None:
    os.kill(proc.pid, signal.SIGSTOP)


def resume(proc: Proc) -> None:
    if proc.proc.poll() is None:
        os.kill(proc.pid, signal.SIGCONT)


@pytest.fixture(scope="module")
def own_devnet() -> Iterator[DevnetProcess]:
    with running_devnet(ledger_interval=0.5) as proc:
        yield proc


@pytest.fixture(scope="module")
async def outage(saga_stack: Any, own_devnet: DevnetProcess) -> AsyncIterator[Outage]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli(),
        search_attributes=list(LOAN_SEARCH_ATTRIBUTES),
        data_converter=pydantic_data_converter,
        dev_server_log_level="error",
        dev_server_extra_args=[
            "--dynamic-config-value",
            f'matching.longPollExpirationInterval="{LONG_POLL_S}s"',
        ],
    )
    prefix = f"test-noworker-{uuid.uuid4().hex[:10]}"
    settings = stack_settings(
        env.client.service_client.config.target_host,
        own_devnet,
        prefix=prefix,
        task_queue=f"noworker-{uuid.uuid4().hex[:8]}",
        open_wait_seconds=OPEN_WAIT_S,
        worker_poll_staleness_seconds=STALENESS_S,
    )
    settings.admin_token = ADMIN_TOKEN
    settings.jwt_secret = JWT_SECRET
    settings.sep10_signing_secret = SEP10_KEYPAIR.secret
    chain = ChainClient(own_devnet.rpc_url, own_devnet.passphrase)
    clients = Clients.build(settings, saga_stack.redis, chain)
    pool = await deploy_pool(own_devnet.rpc_url, own_devnet.passphrase, liquidity=200 * UNIT)
    await register_pool(settings, clients.ledger, chain, pool)
    _, token = await ApiKeyStore(saga_stack.redis, prefix=prefix).create(
        "no-worker", SCOPES, rate_per_minute=1_000_000, max_unsigned=1_000_000
    )
    watcher = Proc("watcher.py", settings)
    api = ApiProc(settings)
    out = Outage(
        settings, env.client, chain, clients.ledger, pool, api, {"Authorization": f"Bearer {token}"}
    )
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            for _ in range(300):
                try:
                    if (await http.get(f"{api.url}/healthz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        yield out
    finally:
        for proc in [*out.workers, watcher]:
            resume(proc)
            proc.stop()
        api.stop()
        for proc in [*out.workers, watcher]:
            print(f"---- worker or watcher, pid {proc.pid}\n{proc.log()[-3000:]}")
        print(f"---- api\n{api.proc.log()[-3000:]}")
        await chain.close()
        await delete_prefix(saga_stack.redis, prefix)
        await env.shutdown()


@pytest.fixture
async def worker(outage: Outage) -> AsyncIterator[Proc]:
    """The stack's only worker, running at the start; stopped (resumed first) at the end."""
    proc = outage.spawn_worker()
    try:
        await wait_ready(outage, 200, within=60)
        yield proc
    finally:
        resume(proc)
        proc.stop()


async def readyz(out: Outage) -> tuple[int, dict[str, str]]:
    async with httpx.AsyncClient(base_url=out.api.url, timeout=10) as http:
        resp = await http.get("/readyz")
    return resp.status_code, resp.json()["checks"]


async def wait_ready(out: Outage, status: int, within: float) -> dict[str, str]:
    deadline = time.monotonic() + within
    while True:
        got, checks = await readyz(out)
        if got == status or time.monotonic() > deadline:
            assert got == status, checks
            return checks
        await asyncio.sleep(0.25)


async def offer_for(out: Outage, borrower: Keypair, vendor: Keypair) -> dict[str, Any]:
    async with out.http() as http:
        # A live but loaded worker may miss the 3 s wait too: the client retries, same key.
        resp = await retry_until_decided(
            http,
            loan_body(out.pool.pool_id, borrower.public_key, vendor.public_key),
            {"Idempotency-Key": f"nw-{uuid.uuid4()}"},
        )
    assert resp.status_code == 201, resp.text
    offer: dict[str, Any] = resp.json()
    return offer


async def timed_get(http: httpx.AsyncClient, loan_id: str) -> tuple[float, httpx.Response]:
    started = time.monotonic()
    resp = await http.get(f"/v1/loans/{loan_id}")
    return time.monotonic() - started, resp


async def test_readyz_names_a_missing_worker(outage: Outage) -> None:
    out = outage
    # No worker polls this task queue (one of another test may have until just now).
    checks = await wait_ready(out, 503, within=LONG_POLL_S + STALENESS_S + 10)
    assert checks["worker"].startswith("down: no worker polled task queue"), checks
    assert {checks[k] for k in ("temporal", "redis", "chain")} == {"ok"}, checks

    worker = out.spawn_worker()
    try:
        await wait_ready(out, 200, within=60)
        pause(worker)
        # The paused worker's last poll ages past the bound (long poll 5 s + bound 8 s).
        started = time.monotonic()
        checks = await wait_ready(out, 503, within=LONG_POLL_S + STALENESS_S + 10)
        assert time.monotonic() - started >= STALENESS_S - LONG_POLL_S - 1
        assert "no worker polled" in checks["worker"], checks
        resume(worker)
        await wait_ready(out, 200, within=30)
    finally:
        resume(worker)
        worker.stop()


async def test_get_and_submit_answer_without_a_worker_and_the_loan_still_funds(
    outage: Outage, worker: Proc
) -> None:
    out = outage
    borrower, vendor = await out.borrower(), await out.borrower()
    offer = await offer_for(out, borrower, vendor)
    loan_id = offer["loan_id"]
    async with out.http() as http:
        _, live = await timed_get(http, loan_id)
        assert live.status_code == 200, live.text
        try:
            pause(worker)
            took, resp = await timed_get(http, loan_id)
            assert resp.status_code == 200, resp.text
            assert took < 1.0, took
            assert resp.json() == live.json()  # the same answer as with the worker running
            assert resp.json()["state"] == "reserved"
            assert resp.json()["funding"]["tx_hash"] == offer["funding"]["tx_hash"]

            signed = sign_envelope(
                offer["funding"]["xdr"], borrower.secret, out.settings.network_passphrase
            )
            started = time.monotonic()
            sub = await http.post(f"/v1/loans/{loan_id}/submit", json={"signed_xdr": signed})
            assert sub.status_code == 202, sub.text
            assert time.monotonic() - started < 5.0
            landed = await wait_for_tx(out.chain, offer["funding"]["tx_hash"], timeout=20)
            assert landed.status == "success", landed

            # Still no worker: the read keeps answering, from the last recorded state.
            took, resp = await timed_get(http, loan_id)
            assert (resp.status_code, resp.json()["state"]) == (200, "reserved")
            assert took < 1.0, took
        finally:
            resume(worker)
        for _ in range(300):
            _, resp = await timed_get(http, loan_id)
            if resp.json()["state"] == "funded":
                break
            await asyncio.sleep(0.2)
        assert resp.json()["state"] == "funded", resp.json()
        assert resp.json()["settled_ledger"] == landed.ledger
        assert [h["state"] for h in resp.json()["history"]][-1] == "funded"
    status = await out.ledger.status(out.pool.pool_id)
    assert (status.reserved, status.active_reservations) == (0, 0)


async def retry_until_decided(
    http: httpx.AsyncClient, body: dict[str, Any], headers: dict[str, str]
) -> httpx.Response:
    """Retry with the same key, as Retry-After says, until the loan's outcome is known."""
    for _ in range(15):
        resp = await http.post("/v1/loans", json=body, headers=headers)
        if resp.status_code != 503 or resp.json()["error"]["code"] != "loan_open_pending":
            return resp
        await asyncio.sleep(int(resp.headers["Retry-After"]))
    raise AssertionError(f"still pending: {resp.text}")


async def assert_refused_late(out: Outage, http: httpx.AsyncClient, loan_id: str, retry) -> None:
    details = assert_error(retry, 503, "open_deadline_passed")
    assert details["loan_id"] == loan_id and details["late_by_ms"] > 0
    assert retry.headers.get("Idempotent-Replayed") == "true"
    _, view = await timed_get(http, loan_id)
    assert view.json()["state"] == "refused", view.json()
    assert view.json()["refusal"]["code"] == "open_deadline_passed"
    reserves = [e for e in await out.ledger.audit(out.pool.pool_id) if e.loan_id == loan_id]
    assert reserves == [], reserves  # the ledger never saw this loan
    # Deterministic: its history replays (and is kept for the replay suite).
    history = await loan_handle(out.client, loan_id).fetch_history()
    await replayer().replay_workflow(history)
    if os.environ.get("RECORD_HISTORIES") == "1":
        (HISTORIES / "loan_open_deadline_passed.json").write_text(history.to_json())


async def test_open_without_a_running_worker_is_bounded_and_refuses_late(outage: Outage) -> None:
    """No worker at all while the caller waits: 503 within the bound, twice; the worker that
    starts afterwards refuses the loan from its deadline, and the retry gets that refusal."""
    out = outage
    await wait_ready(out, 503, within=LONG_POLL_S + STALENESS_S + 10)  # no worker polls
    borrower, vendor = await out.borrower(), await out.borrower()
    body = loan_body(out.pool.pool_id, borrower.public_key, vendor.public_key)
    headers = {"Idempotency-Key": f"nw-{uuid.uuid4()}"}
    async with out.http() as http:
        started = time.monotonic()
        resp = await http.post("/v1/loans", json=body, headers=headers)
        took = time.monotonic() - started
        details = assert_error(resp, 503, "loan_open_pending")
        assert OPEN_WAIT_S - 0.5 <= took < OPEN_WAIT_S + 2.0, took
        assert int(resp.headers["Retry-After"]) >= 1
        loan_id = details["loan_id"]
        # The loan exists and reads as recorded at its start, with no worker.
        took, view = await timed_get(http, loan_id)
        assert (view.status_code, view.json()["state"]) == (200, "assessing"), view.text
        assert took < 1.0, took
        again = await http.post("/v1/loans", json=body, headers=headers)
        assert_error(again, 503, "loan_open_pending")

        worker = out.spawn_worker()
        try:
            await assert_refused_late(
                out, http, loan_id, await retry_until_decided(http, body, headers)
            )
        finally:
            worker.stop()
    status = await out.ledger.status(out.pool.pool_id)
    assert (status.reserved, status.active_reservations) == (0, 0)


async def test_open_with_the_worker_paused_is_bounded_and_a_retry_gets_the_outcome(
    outage: Outage, worker: Proc
) -> None:
    """The only worker paused while the caller waits. Which outcome is real depends on whether
    the paused worker had already taken the loan's first workflow task (its long poll was open
    when it stopped): then the open started, by workflow time, before the deadline and the
    loan is offered; otherwise the open starts after the resume, late, and refuses."""
    out = outage
    borrower, vendor = await out.borrower(), await out.borrower()
    body = loan_body(out.pool.pool_id, borrower.public_key, vendor.public_key)
    headers = {"Idempotency-Key": f"nw-{uuid.uuid4()}"}
    async with out.http() as http:
        try:
            pause(worker)
            started = time.monotonic()
            resp = await http.post("/v1/loans", json=body, headers=headers)
            took = time.monotonic() - started
            details = assert_error(resp, 503, "loan_open_pending")
            assert OPEN_WAIT_S - 0.5 <= took < OPEN_WAIT_S + 2.0, took
            loan_id = details["loan_id"]
            took, view = await timed_get(http, loan_id)
            assert (view.status_code, view.json()["state"]) == (200, "assessing"), view.text
            assert took < 1.0, took
            described = await loan_handle(out.client, loan_id).describe()
            task = described.raw_description.pending_workflow_task
            taken = task.state == PendingWorkflowTaskState.PENDING_WORKFLOW_TASK_STATE_STARTED
        finally:
            resume(worker)
            paused_for = time.monotonic() - started
        retry = await retry_until_decided(http, body, headers)
        print(f"paused worker had taken the task: {taken}; paused for {paused_for:.1f} s")
        if taken and paused_for < 9:  # resumed within the task's 10 s timeout
            assert retry.status_code == 201, retry.text
            assert retry.json()["loan_id"] == loan_id
            assert retry.headers.get("Idempotent-Replayed") == "true"
            status = await out.ledger.status(out.pool.pool_id)
            assert status.reserved == stroops(retry.json()["reserved_amount"])
            cancel = await http.post(f"/v1/loans/{loan_id}/cancel")
            assert cancel.status_code == 202, cancel.text
            for _ in range(100):  # cancelled once the release activity has run
                _, view = await timed_get(http, loan_id)
                if view.json()["state"] == "cancelled":
                    break
                await asyncio.sleep(0.1)
            assert view.json()["state"] == "cancelled", view.json()
        else:
            await assert_refused_late(out, http, loan_id, retry)
    for _ in range(100):
        status = await out.ledger.status(out.pool.pool_id)
        if (status.reserved, status.active_reservations) == (0, 0):
            break
        await asyncio.sleep(0.1)
    assert (status.reserved, status.active_reservations) == (0, 0)
