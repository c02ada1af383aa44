"""Register the loan search attributes on a running Temporal server (docker-compose's
auto-setup server has no `--search-attribute` flag). Idempotent: keys that already exist are
left alone, so it is safe on every start.

Usage: python -m tools.search_attrs [--address HOST:PORT] [--namespace NS]"""

from __future__ import annotations

import argparse
import asyncio
import sys

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client

from core.process_exit import exit_skipping_teardown
from core.settings import Settings
from runtime.clients import temporal_client
from workflows.search_attributes import LOAN_SEARCH_ATTRIBUTES


async def register(client: Client, namespace: str) -> list[str]:
    """Adds the missing loan keys; returns the names it added."""
    existing = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    known = set(existing.custom_attributes) | set(existing.system_attributes)
    missing = {
        key.name: IndexedValueType.ValueType(int(key.indexed_value_type))
        for key in LOAN_SEARCH_ATTRIBUTES
        if key.name not in known
    }
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(search_attributes=missing, namespace=namespace)
        )
    return sorted(missing)


async def _main(address: str, namespace: str, wait_s: float) -> int:
    deadline = asyncio.get_running_loop().time() + wait_s
    while True:
        try:
            client = await temporal_client(
                Settings(_env_file=None, temporal_address=address, temporal_namespace=namespace)
            )
            added = await register(client, namespace)
            break
        except Exception as exc:  # the server may still be starting: retry until the deadline
            if asyncio.get_running_loop().time() > deadline:
                print(f"cannot register search attributes at {address}: {exc}", file=sys.stderr)
                return 1
            await asyncio.sleep(2)
    print(
        f"search attributes: added {added or 'nothing'} "
        f"(all of {[k.name for k in LOAN_SEARCH_ATTRIBUTES]} registered)"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default="127.0.0.1:7233")
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--wait", type=float, default=120.0, help="seconds to wait for Temporal")
    args = parser.parse_args(argv)
    return asyncio.run(_main(args.address, args.namespace, args.wait))


if __name__ == "__main__":
    exit_skipping_teardown(main())
