"""How `make run` keeps its stack up when one process exits: the restart policy (backoff and
giving up after a crash loop) and the loop that applies it to a Supervisor's children.

Processes whose state lives elsewhere (worker, watcher, API: Temporal, Redis and the chain hold
everything they need) are restarted with exponential backoff, each restart logged with the exit
code and the restart count. A process that keeps crashing (`max_restarts` exits within
`window_seconds`) is a fault a restart will not cure: the stack gives up and says so. Temporal
and the devnet are not restarted: the devnet's chain lives in its memory and Temporal's
workflows describe that chain, so a new one would be a different stack; their loss stops it.

Spawning stays in tools/procs.py; this module only decides."""

from __future__ import annotations

import os
import signal
import time
from collections import deque
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

from tools.procs import Child, Supervisor

# The processes whose loss stops the stack, and why (the message says it).
ESSENTIAL: dict[str, str] = {
    "temporal": "the loans' workflows live in its state, which a new server would not have",
    "devnet": "the chain lives in its memory and cannot come back",
}


@dataclass(frozen=True)
class RestartPolicy:
    """`max_restarts` exits within `window_seconds` give up; the n-th exit of such a run waits
    `min(backoff_max, backoff_initial * 2**(n-1))` before the restart."""

    max_restarts: int = 5
    window_seconds: float = 60.0
    backoff_initial: float = 1.0
    backoff_max: float = 30.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> RestartPolicy:
        """STACK_RESTART_MAX, STACK_RESTART_WINDOW_SECONDS, STACK_RESTART_BACKOFF_SECONDS
        (the first delay), STACK_RESTART_BACKOFF_MAX_SECONDS."""
        default = cls()
        return cls(
            max_restarts=int(env.get("STACK_RESTART_MAX", default.max_restarts)),
            window_seconds=float(env.get("STACK_RESTART_WINDOW_SECONDS", default.window_seconds)),
            backoff_initial=float(
                env.get("STACK_RESTART_BACKOFF_SECONDS", default.backoff_initial)
            ),
            backoff_max=float(env.get("STACK_RESTART_BACKOFF_MAX_SECONDS", default.backoff_max)),
        )


@dataclass
class RestartTracker:
    """Each process's recent exits, and what the policy says to do about the next one."""

    policy: RestartPolicy
    exits: dict[str, deque[float]] = field(default_factory=dict)
    restarts: dict[str, int] = field(default_factory=dict)

    def exited(self, name: str, now: float) -> float | None:
        """Seconds to wait before restarting `name`, or None: it crash-loops, give up."""
        recent = self.exits.setdefault(name, deque())
        recent.append(now)
        while recent and now - recent[0] > self.policy.window_seconds:
            recent.popleft()
        if len(recent) > self.policy.max_restarts:
            return None
        delay = self.policy.backoff_initial * 2 ** (len(recent) - 1)
        return min(self.policy.backoff_max, delay)

    def restarted(self, name: str) -> int:
        self.restarts[name] = self.restarts.get(name, 0) + 1
        return self.restarts[name]


class StackLost(RuntimeError):
    """The stack cannot go on; the message says which process and why."""


def supervise(
    sup: Supervisor,
    policy: RestartPolicy,
    *,
    say: Callable[[str], None],
    essential: Mapping[str, str] = ESSENTIAL,
    stop: Callable[[], bool] = lambda: False,
    interval: float = 0.5,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Watch `sup`'s children until `stop()` or a loss the stack cannot survive (StackLost).
    A restart waits out its backoff without blocking the watch of the others."""
    tracker = RestartTracker(policy)
    pending: dict[str, tuple[float, Child]] = {}  # name -> (restart at, the dead child)
    while not stop():
        now = clock()
        for child in dead_children(sup, exclude=pending):
            code = exit_text(child.proc.returncode)
            if child.name in essential:
                raise StackLost(
                    f"{child.name} (pid {child.pid}) {code}: "
                    f"{essential[child.name]}; stopping the stack. Last lines of "
                    f"{child.log_path}:\n{child.tail()}"
                )
            delay = tracker.exited(child.name, now)
            if delay is None:
                raise StackLost(
                    f"{child.name} (pid {child.pid}) {code}: {policy.max_restarts + 1} exits "
                    f"within {policy.window_seconds:g}s, it crash-loops; giving up "
                    f"(STACK_RESTART_MAX={policy.max_restarts}, "
                    f"STACK_RESTART_WINDOW_SECONDS={policy.window_seconds:g}). "
                    f"Last lines of {child.log_path}:\n{child.tail()}"
                )
            say(
                f"{child.name} (pid {child.pid}) {code}; restarting in "
                f"{delay:.1f}s (restart {tracker.restarts.get(child.name, 0) + 1})"
            )
            pending[child.name] = (now + delay, child)
        for name, (at, child) in list(pending.items()):
            if clock() >= at:
                del pending[name]
                fresh = sup.restart(child)
                count = tracker.restarted(name)
                say(f"{name} restarted as pid {fresh.pid} (restart {count})")
        time.sleep(interval)


def exit_text(code: int | None) -> str:
    """`exited with code 3`, or `was killed by SIGKILL (code -9)` for a signal."""
    if code is not None and code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name} (code {code})"
        except ValueError:
            pass
    return f"exited with code {code}"


def dead_children(sup: Supervisor, exclude: Collection[str] = ()) -> list[Child]:
    return [c for c in sup.children if not c.alive() and c.name not in exclude]
