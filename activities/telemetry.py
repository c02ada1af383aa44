"""A worker interceptor that puts an activity's ids in the log context while it runs, so every
line logged under it (ledger, chain client, the SDK's activity logger) carries the loan's
`workflow_id`, `loan_id`, `pool_id` and `tx_hash` where the request names them."""

from __future__ import annotations

from typing import Any

from temporalio import activity
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from core.telemetry.logs import loan_id_of, log_context


class _BindIds(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        fields: dict[str, str | None] = {"workflow_id": info.workflow_id}
        request = input.args[0] if input.args else None
        for name in ("loan_id", "pool_id", "tx_hash"):
            value = getattr(request, name, None)
            if isinstance(value, str):
                fields[name] = value
        if isinstance(request, str) and info.activity_type == "loan.settlement_status":
            fields["tx_hash"] = request
        fields.setdefault("loan_id", loan_id_of(info.workflow_id))
        with log_context(**fields):
            return await super().execute_activity(input)


class LogContextInterceptor(Interceptor):
    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _BindIds(next)
