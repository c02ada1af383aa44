"""docker-compose's one-shot init job: what `make run` does between starting the servers and
starting the app processes, for the containerised stack.

Registers the loan search attributes on the Temporal cluster, bootstraps the devnet (pool,
creditline, LP liquidity, demo borrowers) unless .run/chain.json already names a live pool,
establishes the pool in the reservation ledger when Redis does not know it, and writes the
POOLS / NETWORK_PASSPHRASE lines of .run/stack.env that every app container reads (the rest of
their settings come from the compose environment), with the secrets the API needs (generated on
the first run, kept after) and a platform and an operator API key. Safe to re-run."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any

from tools import stack
from tools.search_attrs import _main as register_search_attributes


def wait_for_rpc(url: str, timeout_s: float = 120) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if stack.rpc_call(url, "getHealth").get("status") == "healthy":
                return str(stack.rpc_call(url, "getNetwork")["passphrase"])
        except Exception as exc:
            if time.monotonic() > deadline:
                raise SystemExit(f"devnet at {url} not healthy: {exc}") from exc
        time.sleep(2)


async def pool_is_live(env: dict[str, str], pool_id: str) -> bool:
    from core.settings import Settings
    from runtime.clients import chain_client

    chain = chain_client(Settings.from_env(env))
    try:
        await chain.pool_stats(pool_id)
    except Exception:
        return False
    finally:
        await chain.close()
    return True


async def ledger_knows(env: dict[str, str], pool_id: str) -> bool:
    from core.settings import Settings
    from runtime.clients import open_clients

    async with open_clients(Settings.from_env(env)) as clients:
        return (await clients.ledger.status(pool_id)).known


def main() -> int:
    env = dict(os.environ)
    rc = asyncio.run(
        register_search_attributes(
            env["TEMPORAL_ADDRESS"], env.get("TEMPORAL_NAMESPACE", "default"), 180
        )
    )
    if rc:
        return rc
    env["NETWORK_PASSPHRASE"] = wait_for_rpc(env["RPC_URL"])
    stack.RUN.mkdir(exist_ok=True)
    stack.LOGS.mkdir(exist_ok=True)
    chain: dict[str, Any] | None = None
    if stack.CHAIN_FILE.exists():
        chain = json.loads(stack.CHAIN_FILE.read_text())
        if not asyncio.run(pool_is_live(env, chain["pool_id"])):
            print("chain.json names a pool the devnet does not have: bootstrapping again")
            chain = None
    if chain is None:
        chain = stack.bootstrap_chain(env["RPC_URL"], env["NETWORK_PASSPHRASE"], env)
    pool_id = chain["pool_id"]
    if asyncio.run(ledger_knows(env, pool_id)):
        print(f"ledger already knows pool {pool_id}: left to the reconciler")
    else:
        figures = asyncio.run(stack.establish_pool(env, pool_id))
        print(f"ledger: pool {pool_id} established at ledger {figures['ledger']}")
    kept = stack.read_env() if stack.ENV_FILE.exists() else {}
    secrets = {
        k: kept[k]
        for k in ("ADMIN_TOKEN", "JWT_SECRET", "SEP10_SIGNING_SECRET", "SEP10_SIGNING_KEY")
        if kept.get(k)
    }
    if len(secrets) < 4:
        secrets = {k: v for k, v in stack.generated_secrets().items() if k != "DEV_STACK"}
    keys = {k: kept[k] for k in ("PLATFORM_API_KEY", "OPERATOR_API_KEY") if kept.get(k)}
    if len(keys) < 2:
        keys = stack.create_stack_keys(env)
    stack.write_env(
        {
            "POOLS": json.dumps({pool_id: chain["creditline_id"]}),
            "NETWORK_PASSPHRASE": env["NETWORK_PASSPHRASE"],
            **secrets,
            **keys,
        }
    )
    print(f"wrote {stack.ENV_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
