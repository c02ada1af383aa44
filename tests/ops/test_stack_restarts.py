"""`make run` supervises like a process manager (issue 13, defect 2): the stack's own watch loop
(tools/stack.watch, policy in tools/restart.py) over a Supervisor running the real processes.
A worker, watcher or API SIGKILLed by its PID comes back (logged with exit code and restart
count) and the stack keeps serving loans; a process that crash-loops makes the stack give up
saying so; the devnet or Temporal gone stops the stack, saying why."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from chain.envelope import sign_envelope
from core.money import UNIT
from devnet.kit import deploy_pool, new_funded_keypair
from tests.api.helpers import loan_body, wait_state
from tests.fixtures.redis import REDIS_URL, delete_prefix
from tests.fixtures.temporal import ROOT
from tests.ops.stack import OpsStack, api_ready, prepare_ops_stack, watcher_up, worker_polling
from tests.saga.procs import CWD, proc_env
from tools import stack as stack_tool
from tools.procs import Child, Supervisor
from tools.restart import RestartPolicy, RestartTracker

PY = sys.executable
FAST = {"STACK_RESTART_BACKOFF_SECONDS": "0.2", "STACK_RESTART_BACKOFF_MAX_SECONDS": "1"}


@dataclass
class Watched:
    """The stack's watch loop running in a thread: what it said and what it returned."""

    sup: Supervisor
    said: list[str] = field(default_factory=list)
    result: int | None = None
    stopping: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def child(self, name: str) -> Child:
        return next(c for c in self.sup.children if c.name == name)

    def replaced(self, old: Child) -> bool:
        return self.child(old.name).pid != old.pid

    def ended(self) -> bool:
        return self.thread is not None and not self.thread.is_alive()

    def log(self) -> str:
        return "\n".join(self.said)


@contextlib.contextmanager
def watching(sup: Supervisor, monkeypatch: pytest.MonkeyPatch, **env: str) -> Iterator[Watched]:
    """`tools.stack.watch(sup)` as `make run` calls it after start-up, its policy from `env`."""
    watched = Watched(sup)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(stack_tool, "say", watched.said.append)

    def body() -> None:
        watched.result = stack_tool.watch(sup, stop=watched.stopping.is_set)

    watched.thread = threading.Thread(target=body, name="stack-watch", daemon=True)
    watched.thread.start()
    try:
        yield watched
    finally:
        watched.stopping.set()
        watched.thread.join(10)
        print(f"---- the watch loop said:\n{watched.log()}")  # shown when the test fails
        for child in sup.children:
            print(f"---- {child.name} (pid {child.pid}):\n{child.tail(40)}")
        sup.stop_all()


async def until(what: str, probe: Callable[[], Awaitable[bool] | bool], within: float) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            got = probe()
            if not isinstance(got, bool):
                got = await got
            if got:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within}s")
        await asyncio.sleep(0.2)


SERVING: dict[str, Callable[[OpsStack], Awaitable[bool]]] = {
    "api": api_ready,
    "worker": worker_polling,
    "watcher": watcher_up,
}


async def test_killed_worker_watcher_and_api_come_back_and_the_stack_serves(
    temporal_env: Any, devnet: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    redis = aioredis.from_url(REDIS_URL, decode_responses=True)
    pool = await deploy_pool(devnet.rpc_url, devnet.passphrase, liquidity=100 * UNIT)
    ops = await prepare_ops_stack(temporal_env, devnet, redis, pool)
    env = proc_env(ops.settings)
    sup = Supervisor(tmp_path / "logs")
    sup.start("worker", [PY, str(ROOT / "worker.py")], env, cwd=CWD)
    sup.start("watcher", [PY, str(ROOT / "watcher.py")], env, cwd=CWD)
    sup.start("api", [PY, "-m", "api"], env, cwd=CWD)
    try:
        with watching(sup, monkeypatch, **FAST) as watched:
            for name, serving in SERVING.items():
                await until(f"{name} serving", functools.partial(serving, ops), 120)
            for name, serving in SERVING.items():
                old = watched.child(name)
                os.kill(old.pid, signal.SIGKILL)
                await until(f"{name} restarted", functools.partial(watched.replaced, old), 30)
                new = watched.child(name)
                assert (
                    f"{name} (pid {old.pid}) was killed by SIGKILL (code -9); restarting in 0.2s "
                    "(restart 1)" in watched.said
                ), watched.log()
                assert f"{name} restarted as pid {new.pid} (restart 1)" in watched.said
                await until(f"{name} serving again", functools.partial(serving, ops), 120)
                assert new.alive() and not watched.ended(), watched.log()

            # Every process now runs as its restarted self: a loan opens (worker), is relayed
            # (API) and funds (watcher / settlement), and the stack is still up.
            vendor = await new_funded_keypair(devnet.rpc_url)
            borrower = await new_funded_keypair(
                devnet.rpc_url, token_id=pool.token_id, token_amount=100 * UNIT
            )
            total = Decimal(20) * Decimal("1.25")
            body = loan_body(
                pool.pool_id,
                borrower.public_key,
                vendor.public_key,
                total=format(total.normalize(), "f"),
                guarantee=format((total - 20).normalize(), "f"),
            )
            async with ops.http() as http:
                opened = await http.post(
                    "/v1/loans", json=body, headers={"Idempotency-Key": f"restart-{pool.pool_id}"}
                )
                assert opened.status_code == 201, opened.text
                loan = opened.json()
                signed = sign_envelope(loan["funding"]["xdr"], borrower.secret, devnet.passphrase)
                sent = await http.post(
                    f"/v1/loans/{loan['loan_id']}/submit", json={"signed_xdr": signed}
                )
                assert sent.status_code == 202, sent.text
                await wait_state(http, loan["loan_id"], {"funded"}, within=60)
            assert not watched.ended() and all(c.alive() for c in sup.children), watched.log()
    finally:
        await delete_prefix(redis, ops.settings.ledger_prefix)
        await redis.aclose()


async def test_a_crash_loop_makes_the_stack_give_up_saying_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sup = Supervisor(tmp_path / "logs")
    crash = "import sys; print('watcher: cannot read its settings'); sys.exit(3)"
    sup.start("watcher", [PY, "-c", crash], dict(os.environ), cwd=CWD)
    with watching(
        sup, monkeypatch, **FAST, STACK_RESTART_MAX="3", STACK_RESTART_WINDOW_SECONDS="30"
    ) as watched:
        await until("the stack giving up", watched.ended, 30)
    assert watched.result == 1
    restarts = [line for line in watched.said if "exited with code 3; restarting" in line]
    assert [line.rsplit(" in ", 1)[1] for line in restarts] == [
        "0.2s (restart 1)",
        "0.4s (restart 2)",
        "0.8s (restart 3)",
    ], watched.log()
    final = watched.said[-1]
    assert "exited with code 3: 4 exits within 30s, it crash-loops; giving up" in final, final
    assert "STACK_RESTART_MAX=3" in final and "cannot read its settings" in final, final


def wait_for(what: str, probe: Callable[[], bool], within: float) -> None:
    deadline = time.monotonic() + within
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within}s")
        time.sleep(0.2)


@pytest.mark.parametrize("essential", ["devnet", "temporal"])
def test_losing_the_devnet_or_temporal_stops_the_stack_saying_why(
    essential: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sup = Supervisor(tmp_path / "logs")
    if essential == "devnet":
        stack_tool.start_devnet(sup, {**os.environ, "PYTHONUNBUFFERED": "1"})
        why = "the chain lives in its memory and cannot come back; stopping the stack"
    else:
        stack_tool.start_temporal(sup, db=tmp_path / "temporal.db")
        why = "the loans' workflows live in its state"
    # A restartable neighbour: it is not what stops the stack, and it is stopped with it.
    sup.start("watcher", [PY, "-c", "import time; time.sleep(300)"], dict(os.environ), cwd=CWD)
    victim = sup.children[0]
    # (a plain test: start_temporal's probe runs its own event loop)
    with watching(sup, monkeypatch, **FAST) as watched:
        time.sleep(1.0)
        assert not watched.ended(), watched.log()
        os.kill(victim.pid, signal.SIGKILL)
        wait_for("the stack stopping", watched.ended, 15)
    assert watched.result == 1
    assert watched.said[-1].startswith(
        f"{essential} (pid {victim.pid}) was killed by SIGKILL (code -9): "
    ), watched.log()
    assert why in watched.said[-1]
    assert not any("restart" in line for line in watched.said), watched.log()
    assert not sup.children  # the whole stack stopped with it


def test_exits_spread_wider_than_the_window_never_give_up() -> None:
    """The give-up counts exits in a sliding window: a process that crashes now and then (each
    after running a while) is restarted for ever, its backoff back at the start."""
    tracker = RestartTracker(RestartPolicy(max_restarts=2, window_seconds=10, backoff_initial=1))
    assert [tracker.exited("worker", t) for t in (0, 1, 2.5)] == [1, 2, None]
    tracker = RestartTracker(RestartPolicy(max_restarts=2, window_seconds=10, backoff_initial=1))
    assert [tracker.exited("worker", t) for t in (0, 11, 22, 33, 34)] == [1, 1, 1, 1, 2]
