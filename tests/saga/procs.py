"""`worker.py` / `watcher.py` as real subprocesses, for the crash tests: started with the
environment of a Settings instance, stopped (or SIGKILLed) by the PID we started, nothing else."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.fixtures.temporal import ROOT, settings_env


def proc_env(settings: Any, extra_env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a product process that reads `settings` (and nothing of the checkout's
    .run/stack.env: run it with cwd=CWD)."""
    return {**os.environ, **settings_env(settings), **(extra_env or {}), "PYTHONPATH": str(ROOT)}


# cwd outside the checkout so a developer's .run/stack.env cannot leak into the settings
CWD = Path(tempfile.gettempdir())


class Proc:
    def __init__(
        self,
        script: str,
        settings: Any,
        extra_env: dict[str, str] | None = None,
        argv: list[str] | None = None,
    ) -> None:
        """`script` (a file of the checkout) names the process; `argv` (after the interpreter,
        e.g. ["-m", "api"]) replaces running it as a file."""
        env = proc_env(settings, extra_env)
        self._log = tempfile.NamedTemporaryFile(
            prefix=f"{Path(script).stem}-", suffix=".log", delete=False
        )
        self.proc = subprocess.Popen(
            [sys.executable, *(argv or [str(ROOT / script)])],
            env=env,
            cwd=CWD,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()

    def log(self) -> str:
        return Path(self._log.name).read_text(errors="replace")
