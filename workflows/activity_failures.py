"""Every failure an activity can surface in a workflow, and one text for it.

A local activity's final failure reaches the workflow as `ActivityError(cause=TimeoutError)` on
the first run, but replayed from its marker as the bare `TimeoutError` (likewise a bare
`ApplicationError` or `CancelledError`); a regular activity's comes as `ActivityError` both times.
Code that catches only `ActivityError` thus takes another branch on replay than it took live: the
workflow task fails, and with it every query of the workflow (issue 13: a loan whose open step
timed out answered 500 on every read). Catch `ACTIVITY_FAILURES` and describe the failure with
`failure_text`, which names the root cause, so both runs take the same branch with the same words.

Workflow code: no I/O, imported by the sandbox."""

from __future__ import annotations

from temporalio.exceptions import ActivityError, FailureError

# ActivityError, ApplicationError, TimeoutError, CancelledError (temporalio's, not asyncio's: an
# eviction or a cancel of the workflow's own task is never caught here) and the rest.
ACTIVITY_FAILURES: tuple[type[Exception], ...] = (FailureError,)


def root_failure(err: BaseException) -> BaseException:
    """The failure under any ActivityError wrapping: what the replayed marker holds."""
    while isinstance(err, ActivityError) and err.cause is not None:
        err = err.cause
    return err


def failure_text(err: BaseException) -> str:
    root = root_failure(err)
    return str(root) or type(root).__name__
