"""How a command that used a Temporal client ends."""

from __future__ import annotations

import os
import sys
from typing import NoReturn


def exit_skipping_teardown(code: int) -> NoReturn:
    """Exit with `code` without the interpreter's teardown.

    temporalio/sdk-python#300: the client's Rust runtime threads can still call into Python while
    the interpreter finalizes, which aborts the process (SIGABRT, "PyGILState_Release ... Python
    runtime state: finalizing") after all of its work is done, so a caller sees a crash and a
    non-zero status for a run that succeeded. Call this once the command's own cleanup is done."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
