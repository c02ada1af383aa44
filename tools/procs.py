"""Child processes of the local stack: start each in its own session (so a terminal's Ctrl-C
reaches only the launcher, which then stops children in order), log to a file, wait until a
probe answers, and stop exactly the processes we started, by their PID."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from core.net import free_port, port_is_free

__all__ = [
    "Child",
    "Supervisor",
    "free_port",
    "port_is_free",
    "stop",
    "tcp_open",
    "unwind_on_stop_signals",
]


def tcp_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    # How it was started, so a supervisor can start it again the same way.
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Supervisor:
    """Owns the children it started; `stop_all` ends them newest first."""

    log_dir: Path
    children: list[Child] = field(default_factory=list)

    def start(
        self,
        name: str,
        argv: Sequence[str],
        env: dict[str, str],
        cwd: Path | None = None,
        *,
        replacing: Child | None = None,
    ) -> Child:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        log = open(log_path, "ab")  # handed to the child, closed below
        # A JSON line like every line the processes write (they log JSON), so a log reader
        # never meets a line it cannot parse.
        header = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "level": "INFO",
            "logger": "stack",
            "process": name,
            "message": "started",
            "argv": list(argv),
        }
        log.write((json.dumps(header) + "\n").encode())
        log.flush()
        proc = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        log.close()
        child = Child(name, proc, log_path, list(argv), dict(env), cwd)
        if replacing is None:
            self.children.append(child)
        else:  # in one step: whoever reads the list meets the old child or the new one
            self.children[self.children.index(replacing)] = child
        return child

    def restart(self, child: Child) -> Child:
        """Start `child` again as it was started (same argv, env, cwd and log file), in its
        place in the stop order; the old process must have exited."""
        if child.alive():
            raise RuntimeError(f"{child.name} (pid {child.pid}) is still running")
        return self.start(child.name, child.argv, child.env, child.cwd, replacing=child)

    def wait_until(
        self, child: Child, ready: Callable[[], bool], timeout: float, what: str
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not child.alive():
                raise RuntimeError(
                    f"{child.name} exited (code {child.proc.returncode}) "
                    f"before {what}; last log lines:\n{child.tail()}"
                )
            if ready():
                return
            time.sleep(0.2)
        raise RuntimeError(
            f"{child.name} did not get {what} within {timeout:.0f}s; "
            f"log: {child.log_path}\n{child.tail()}"
        )

    def first_dead(self) -> Child | None:
        return next((c for c in self.children if not c.alive()), None)

    def stop_all(self, grace: float = 10.0) -> None:
        for child in reversed(self.children):
            stop(child, grace)
        self.children.clear()


def stop(child: Child, grace: float = 10.0) -> None:
    """SIGTERM the child's own process group (its leader is the PID we started), then SIGKILL."""
    if not child.alive():
        return
    try:
        os.killpg(child.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        child.proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        child.proc.wait(timeout=5)


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def unwind_on_stop_signals() -> None:
    """SIGTERM and SIGINT raise KeyboardInterrupt in the main thread, so a launcher's `finally`
    blocks stop the processes it started instead of orphaning them: SIGTERM is a background
    run's only stop, and SIGINT is handled even when the launcher was started with it ignored.
    For synchronous launchers; an asyncio process uses runtime.signals.stop_event."""
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
