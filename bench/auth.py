"""What authentication costs per request (`make bench-auth`, i.e. `python -m bench.auth`).

Two API processes (`python -m api`, real secrets, one Redis, a private key prefix deleted at
the end) serve the same pool: one with `PUBLIC_LIQUIDITY=true`, one with the default. The same
route, `GET /v1/pools/{id}/liquidity`, is then called

- `none`: with no credential, on the public process (the handler and its ledger read only);
- `api key`: with a `pools:read` API key (one HGETALL of the key's record, a SHA-256 and a
  constant-time compare per request: no cache, so a revocation is seen at once);
- `jwt`: with a borrower's SEP-10 session token (HS256 verify, no Redis),

so the difference of two modes is what authenticating costs, nothing else. `GET /healthz` on
both processes is the control: it shows the two processes answer alike. Modes are measured in
interleaved rounds (the shared machine's speed drifts), first one request at a time (latency
p50/p99; the overhead is the p50 difference), then `--concurrency` at once (requests/s; CPU per
request = 1/rate, the overhead its difference).

Then `--logins` SEP-10 logins, as a wallet does them with stellar-sdk's client helpers: GET the
challenge, read and check it (`read_challenge_transaction`), sign it, POST it for a token; p50
and p99 of the whole login and of its two requests.

Prints a table, then one JSON object as the last line."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from stellar_sdk import Keypair, StrKey, TransactionEnvelope
from stellar_sdk.sep.stellar_web_authentication import read_challenge_transaction

from api.auth.keys import ApiKeyStore
from core.money import UNIT
from core.settings import Settings
from runtime.clients import Clients
from tools.procs import Supervisor, free_port

ROOT = Path(__file__).resolve().parents[1]
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def fake_contract_id() -> str:
    return StrKey.encode_contract(secrets.token_bytes(32))


def base_settings(prefix: str, pool_id: str) -> Settings:
    return Settings(
        _env_file=None,
        redis_url=REDIS_URL,
        ledger_prefix=prefix,
        pools={pool_id: fake_contract_id()},
        admin_token=secrets.token_urlsafe(24),
        jwt_secret=secrets.token_urlsafe(48),
        sep10_signing_secret=Keypair.random().secret,
        log_level="WARNING",
        api_metrics_port=0,
        reconcile_schedule_enabled=False,
    )


def start_api(sup: Supervisor, name: str, settings: Settings) -> str:
    env = {**os.environ, **settings.as_env(), "PYTHONPATH": str(ROOT)}
    child = sup.start(name, [sys.executable, "-m", "api"], env, cwd=ROOT)
    url = f"http://127.0.0.1:{settings.api_port}"

    def up() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    sup.wait_until(child, up, 60, "answering /healthz")
    return url


async def login(
    http: httpx.AsyncClient, url: str, me: Keypair, settings: Settings
) -> dict[str, Any]:
    """One SEP-10 login, timed by step."""
    t0 = time.perf_counter()
    resp = await http.get(f"{url}/v1/auth", params={"account": me.public_key})
    t1 = time.perf_counter()
    assert resp.status_code == 200, resp.text
    challenge = resp.json()["transaction"]
    read_challenge_transaction(
        challenge,
        Keypair.from_secret(settings.sep10_signing_secret).public_key,
        settings.sep10_home_domain,
        f"127.0.0.1:{settings.api_port}",
        settings.network_passphrase,
    )
    envelope = TransactionEnvelope.from_xdr(challenge, settings.network_passphrase)
    envelope.sign(me)
    t2 = time.perf_counter()
    resp = await http.post(f"{url}/v1/auth", json={"transaction": envelope.to_xdr()})
    t3 = time.perf_counter()
    assert resp.status_code == 200, resp.text
    return {
        "token": resp.json()["token"],
        "challenge_ms": (t1 - t0) * 1000,
        "exchange_ms": (t3 - t2) * 1000,
        "login_ms": (t3 - t0) * 1000,
    }


Call = Callable[[], Awaitable[httpx.Response]]


async def sequential(call: Call, n: int, into: list[float]) -> None:
    for _ in range(n):
        t0 = time.perf_counter()
        resp = await call()
        into.append((time.perf_counter() - t0) * 1000)
        assert resp.status_code == 200, resp.text


async def concurrent(call: Call, clients: int, seconds: float) -> tuple[int, float]:
    done = 0
    deadline = time.perf_counter() + seconds

    async def one() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            resp = await call()
            assert resp.status_code == 200, resp.text
            done += 1

    t0 = time.perf_counter()
    await asyncio.gather(*[one() for _ in range(clients)])
    return done, time.perf_counter() - t0


async def run(args: argparse.Namespace) -> dict[str, Any]:
    prefix = f"bench-auth-{uuid.uuid4().hex[:8]}"
    pool_id = fake_contract_id()
    private = base_settings(prefix, pool_id)
    private.api_port = free_port()
    private.public_url = f"http://127.0.0.1:{private.api_port}"
    public = private.model_copy(update={"public_liquidity": True, "api_port": free_port()})
    public.public_url = f"http://127.0.0.1:{public.api_port}"

    clients = Clients.open(private)
    sup = Supervisor(Path(tempfile.mkdtemp(prefix="bench-auth-")))
    try:
        await clients.ledger.apply_snapshot(
            pool_id, ledger=1, total=1_000 * UNIT, locked=0, available=1_000 * UNIT, establish=True
        )
        _, api_key = await ApiKeyStore.of(private, clients.redis).create(
            "bench-auth", ["pools:read"]
        )
        public_url = await asyncio.to_thread(start_api, sup, "api-public", public)
        private_url = await asyncio.to_thread(start_api, sup, "api-private", private)

        limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=64)
        async with httpx.AsyncClient(timeout=30, limits=limits) as http:
            me = Keypair.random()
            for _ in range(5):  # warm-up: imports and first-use caches of both processes
                await login(http, private_url, me, private)
            logins = [await login(http, private_url, me, private) for _ in range(args.logins)]
            token = logins[-1]["token"]

            path = f"/v1/pools/{pool_id}/liquidity"
            modes: dict[str, Call] = {
                "none": lambda: http.get(f"{public_url}{path}"),
                "api key": lambda: http.get(
                    f"{private_url}{path}", headers={"Authorization": f"Bearer {api_key}"}
                ),
                "jwt": lambda: http.get(
                    f"{private_url}{path}", headers={"Authorization": f"Bearer {token}"}
                ),
                "healthz public": lambda: http.get(f"{public_url}/healthz"),
                "healthz private": lambda: http.get(f"{private_url}/healthz"),
            }
            latencies: dict[str, list[float]] = {m: [] for m in modes}
            for call in modes.values():  # warm-up
                await sequential(call, 50, [])
            for _ in range(args.rounds):
                for mode, call in modes.items():
                    await sequential(call, args.requests, latencies[mode])
            counts = {m: [0, 0.0] for m in modes}
            for _ in range(args.throughput_rounds):
                for mode, call in modes.items():
                    done, took = await concurrent(call, args.concurrency, args.seconds)
                    counts[mode][0] += done
                    counts[mode][1] += took
    finally:
        sup.stop_all()
        async for k in clients.redis.scan_iter(match=f"{prefix}:*", count=1000):
            await clients.redis.delete(k)
        await clients.close()

    p50 = {m: statistics.median(v) for m, v in latencies.items()}
    rate = {m: c[0] / c[1] for m, c in counts.items()}
    cpu_ms = {m: 1000 / r for m, r in rate.items()}
    return {
        "requests_per_mode": args.rounds * args.requests,
        "concurrency": args.concurrency,
        "p50_ms": p50,
        "p99_ms": {m: pct(v, 0.99) for m, v in latencies.items()},
        "rate_per_s": rate,
        "api_key_overhead_ms": p50["api key"] - p50["none"],
        "jwt_overhead_ms": p50["jwt"] - p50["none"],
        "api_key_cpu_overhead_ms": cpu_ms["api key"] - cpu_ms["none"],
        "jwt_cpu_overhead_ms": cpu_ms["jwt"] - cpu_ms["none"],
        "healthz_process_diff_ms": p50["healthz private"] - p50["healthz public"],
        "logins": len(logins),
        "login_p50_ms": statistics.median(x["login_ms"] for x in logins),
        "login_p99_ms": pct([x["login_ms"] for x in logins], 0.99),
        "challenge_p50_ms": statistics.median(x["challenge_ms"] for x in logins),
        "exchange_p50_ms": statistics.median(x["exchange_ms"] for x in logins),
    }


def table(r: dict[str, Any]) -> str:
    rows = [
        f"GET /v1/pools/{{id}}/liquidity, {r['requests_per_mode']} sequential requests per "
        f"mode, then {r['concurrency']} concurrent",
        f"{'mode':<16} {'p50 ms':>8} {'p99 ms':>8} {'+p50 ms':>8} {'req/s':>8} {'+CPU ms':>8}",
    ]
    base_p50 = r["p50_ms"]["none"]
    base_cpu = 1000 / r["rate_per_s"]["none"]
    for mode, p50 in r["p50_ms"].items():
        rate = r["rate_per_s"][mode]
        extra = f"{p50 - base_p50:>+8.3f} {rate:>8.0f} {1000 / rate - base_cpu:>+8.3f}"
        if mode.startswith("healthz"):
            extra = f"{'':>8} {rate:>8.0f} {'':>8}"
        rows.append(f"{mode:<16} {p50:>8.3f} {r['p99_ms'][mode]:>8.3f} {extra}")
    rows += [
        "",
        f"SEP-10 login ({r['logins']}): p50 {r['login_p50_ms']:.2f} ms, "
        f"p99 {r['login_p99_ms']:.2f} ms "
        f"(challenge GET p50 {r['challenge_p50_ms']:.2f} ms, "
        f"token POST p50 {r['exchange_p50_ms']:.2f} ms)",
    ]
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--requests", type=int, default=200, help="per mode per round")
    parser.add_argument("--throughput-rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=1.5, help="per mode per round")
    parser.add_argument("--logins", type=int, default=200)
    args = parser.parse_args()
    result = asyncio.run(run(args))
    print(table(result))
    print(json.dumps({"bench": "auth", **result}))


if __name__ == "__main__":
    main()
