"""A default bound on the Temporal client calls the server answers by itself (query, signal,
describe, cancel, terminate, count): without one such a call waits as long as the server takes,
and an HTTP caller with it. A call that passes its own `rpc_timeout` keeps it. Updates and
workflow starts are not bounded here: they wait for a workflow task, and their callers bound
that wait themselves. Past the bound the call raises RPCError (DEADLINE_EXCEEDED)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import client as tc


class _Bounded(tc.OutboundInterceptor):
    def __init__(self, next: tc.OutboundInterceptor, timeout: timedelta) -> None:
        super().__init__(next)
        self._timeout = timeout

    def _bound(self, input: Any) -> Any:
        if input.rpc_timeout is None:
            input.rpc_timeout = self._timeout
        return input

    async def query_workflow(self, input: tc.QueryWorkflowInput) -> Any:
        return await super().query_workflow(self._bound(input))

    async def signal_workflow(self, input: tc.SignalWorkflowInput) -> None:
        await super().signal_workflow(self._bound(input))

    async def describe_workflow(
        self, input: tc.DescribeWorkflowInput
    ) -> tc.WorkflowExecutionDescription:
        return await super().describe_workflow(self._bound(input))

    async def cancel_workflow(self, input: tc.CancelWorkflowInput) -> None:
        await super().cancel_workflow(self._bound(input))

    async def terminate_workflow(self, input: tc.TerminateWorkflowInput) -> None:
        await super().terminate_workflow(self._bound(input))

    async def count_workflows(self, input: tc.CountWorkflowsInput) -> tc.WorkflowExecutionCount:
        return await super().count_workflows(self._bound(input))


class RpcTimeoutInterceptor(tc.Interceptor):
    def __init__(self, timeout: timedelta) -> None:
        self._timeout = timeout

    def intercept_client(self, next: tc.OutboundInterceptor) -> tc.OutboundInterceptor:
        return _Bounded(next, self._timeout)
