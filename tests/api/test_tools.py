"""The docker-compose init path registers the loan search attributes on a server that was not
started with them (auto-setup has no --search-attribute flag): on a fresh namespace of the real
dev server, the first run adds all of them, the second adds nothing."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

from google.protobuf.duration_pb2 import Duration
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest

from tools.search_attrs import register
from workflows.search_attributes import LOAN_SEARCH_ATTRIBUTES


async def test_search_attributes_are_registered_once(temporal_env: Any) -> None:
    client = temporal_env.client
    namespace = f"sa-{uuid.uuid4().hex[:8]}"
    retention = Duration()
    retention.FromTimedelta(timedelta(days=1))
    await client.workflow_service.register_namespace(
        RegisterNamespaceRequest(namespace=namespace, workflow_execution_retention_period=retention)
    )
    names = sorted(k.name for k in LOAN_SEARCH_ATTRIBUTES)
    for _ in range(50):  # a new namespace becomes visible to the operator service shortly
        try:
            added = await register(client, namespace)
            break
        except Exception:
            await asyncio.sleep(0.2)
    else:
        raise AssertionError("namespace never became usable")
    assert added == names
    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    assert set(names) <= set(listed.custom_attributes)
    assert await register(client, namespace) == []
