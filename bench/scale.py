"""How the costs grow with the work (`make bench-scale`, one run, ~5-8 min on 2 cores).

Everything real: a Temporal dev server, the devnet, `worker.py` as a subprocess (its memory is
what is measured), the Redis at REDIS_URL for the saga, and for the ledger comparison a single
`redis-server` and a 3-master Redis Cluster this run starts on free ports (stopped by PID at the
end).

1. ledger reserve p50 (sequential, one client): single node vs the cluster (target <= 1.3x);
2. a settlement watcher pass (`SettlementWatcher.step`) with 1 / 12 / 120 pools;
3. loans opened and left waiting for the borrower's signature, 0 -> 100 -> 1,000 -> 5,000 ->
   10,000: the worker's RSS with 0 / 1,000 / 5,000 waiting, a reconciliation run's time at
   100 / 1,000 / 10,000 open reservations (every reservation looked up in Temporal and on
   chain), and time-to-XDR p50 of single loans with 5,000 waiting vs with none (target <= 1.2x).
   Reservations are held for hours (`reservation_ttl_seconds`), so none expires while the
   levels grow: every level counts the loans opened before it.

Each series gets a growth class (constant / sub-linear / linear / super-linear, from the first
and last points), in the table and in the JSON.

Prints a table and, as its last line, one JSON object."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from stellar_sdk import Keypair
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from bench.e2e import FUNDED, ROOT, settings_env, terms
from core.models import Cancel, LoanInput, LoanOffer, OpenLoan
from core.process_exit import exit_skipping_teardown
from core.settings import Settings
from devnet.kit import deploy_pool, new_funded_keypair, start_devnet
from liquidity.connection import RedisClient, connect_redis
from liquidity.ledger import Ledger
from reconcile.reconciler import establish_pool
from runtime.clients import Clients
from settlement.watcher import SettlementWatcher
from tools.procs import Supervisor, free_port, unwind_on_stop_signals
from tools.redis_servers import start_cluster, start_server
from workflows.loan_client import open_loan, signal_cancel
from workflows.reconcile_client import reconcile_now
from workflows.search_attributes import LOAN_SEARCH_ATTRIBUTES

PASSPHRASE = "Local Devnet ; bench-scale"


def p50(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def growth(xs: list[float], ys: list[float]) -> str:
    """constant / sub-linear / linear / super-linear, from the last point vs the first."""
    if not xs or ys[0] <= 0:
        return "n/a"
    ratio, scale = ys[-1] / ys[0], xs[-1] / max(xs[0], 1e-9)
    if ratio < 1.5:
        return "constant"
    exponent = math.log(ratio) / math.log(scale)
    if exponent < 0.8:
        return f"sub-linear (~n^{exponent:.2f})"
    if exponent <= 1.2:
        return f"linear (~n^{exponent:.2f})"
    return f"super-linear (~n^{exponent:.2f})"


# ---- 1. ledger on a cluster vs one node --------------------------------------------------------


async def reserve_p50(redis: RedisClient, prefix: str, samples: int) -> float:
    ledger = Ledger(redis, prefix=prefix)
    pool = f"bench-{uuid.uuid4().hex[:8]}"
    await ledger.apply_snapshot(
        pool, ledger=1, total=10**15, locked=0, available=10**15, establish=True
    )
    for i in range(200):  # warm: script loaded, connections open
        await ledger.reserve(pool, f"w{i}", "b", 1, ttl_ms=60_000, borrower_limit=10**15)
    times: list[float] = []
    for i in range(samples):
        t0 = time.perf_counter()
        await ledger.reserve(pool, f"L{i}", f"b{i % 50}", 1, ttl_ms=60_000, borrower_limit=10**15)
        times.append((time.perf_counter() - t0) * 1000)
    await redis.delete(*ledger.keys(pool).ordered())
    return p50(times)


async def ledger_cluster_vs_single(samples: int, rounds: int = 3) -> dict[str, float]:
    """Both topologies are servers this run starts, alike (no persistence, no other client): the
    shared Redis at REDIS_URL carries whatever else runs on the machine, which would be measured
    as the single node's cost. Measured alternately, `rounds` times each; the p50s are the
    medians of the rounds."""
    prefix = f"bench-scale-{uuid.uuid4().hex[:8]}"
    root = Path(tempfile.mkdtemp(prefix="bench-scale-redis-"))
    single_server = start_server(root / "single", free_port())
    cluster = start_cluster(root)
    try:
        single = connect_redis(f"redis://127.0.0.1:{single_server.port}/0")
        on_cluster = connect_redis(cluster.url, cluster=True)
        s: list[float] = []
        c: list[float] = []
        try:
            for _ in range(rounds):
                s.append(await reserve_p50(single, prefix, samples))
                c.append(await reserve_p50(on_cluster, prefix, samples))
        finally:
            await single.aclose()
            await on_cluster.aclose()
    finally:
        cluster.stop()
        single_server.stop()
        shutil.rmtree(root, ignore_errors=True)
    single_ms, cluster_ms = p50(s), p50(c)
    return {"single_ms": single_ms, "cluster_ms": cluster_ms, "ratio": cluster_ms / single_ms}


# ---- 2. watcher pass time by number of pools ---------------------------------------------------


async def watcher_passes(clients: Clients, client: Any, levels: list[int]) -> dict[int, float]:
    settings = clients.settings
    pools: list[Any] = []
    while len(pools) < max(levels):
        batch = await asyncio.gather(
            *(
                deploy_pool(settings.rpc_url, settings.network_passphrase, liquidity=100 * FUNDED)
                for _ in range(min(10, max(levels) - len(pools)))
            )
        )
        pools.extend(batch)
    for pool in pools:
        await establish_pool(clients.ledger, clients.chain, pool.pool_id)
    result: dict[int, float] = {}
    for n in levels:
        local = settings.model_copy(deep=True)
        local.pools = {p.pool_id: p.creditline_id for p in pools[:n]}
        watcher = SettlementWatcher(
            settings=local,
            client=client,
            chain=clients.chain,
            ledger=clients.ledger,
            tx_index=clients.tx_index,
        )
        for _ in range(3):
            await watcher.step()
        times: list[float] = []
        for _ in range(15):
            t0 = time.perf_counter()
            await watcher.step()
            times.append((time.perf_counter() - t0) * 1000)
        result[n] = p50(times)
    return result


# ---- 3. waiting loans: memory, reconcile, time-to-XDR -----------------------------------------


class Loans:
    def __init__(self, clients: Clients, client: Any, pool: Any) -> None:
        self.clients, self.client, self.pool = clients, client, pool
        self.vendor = ""
        self.accounts: list[Keypair] = []
        self.open_ids: list[str] = []

    async def fund(self, n: int) -> None:
        s = self.clients.settings
        if not self.vendor:
            self.vendor = (await new_funded_keypair(s.rpc_url)).public_key
        sem = asyncio.Semaphore(16)

        async def one() -> Keypair:
            async with sem:
                return await new_funded_keypair(
                    s.rpc_url, token_id=self.pool.token_id, token_amount=FUNDED
                )

        self.accounts += await asyncio.gather(*(one() for _ in range(n)))

    async def open_one(self) -> tuple[str, float]:
        s = self.clients.settings
        kp = self.accounts.pop()
        loan_id = uuid.uuid4().hex
        t0 = time.perf_counter()
        offer = await open_loan(
            self.client,
            task_queue=s.task_queue,
            loan=LoanInput(
                loan_id=loan_id,
                pool_id=self.pool.pool_id,
                creditline_id=self.pool.creditline_id,
                terms=terms(kp.public_key, self.vendor),
                fingerprint=loan_id,
            ),
            request=OpenLoan(fingerprint=loan_id, request_nonce=loan_id),
            idempotency_key=loan_id,
        )
        elapsed = (time.perf_counter() - t0) * 1000
        if not isinstance(offer, LoanOffer):
            raise RuntimeError(f"loan refused: {offer}")
        return loan_id, elapsed

    async def grow_to(self, waiting: int, concurrency: int = 16) -> None:
        missing = waiting - len(self.open_ids)
        if missing <= 0:
            return
        await self.fund(missing)
        todo = list(range(missing))

        async def borrower() -> None:
            while todo:
                todo.pop()
                loan_id, _ = await self.open_one()
                self.open_ids.append(loan_id)

        await asyncio.gather(*(borrower() for _ in range(concurrency)))

    async def xdr_p50(self, samples: int) -> float:
        """Single loans one after another (nothing else in flight), cancelled afterwards."""
        await self.fund(samples)
        times: list[float] = []
        ids: list[str] = []
        for _ in range(samples):
            loan_id, ms = await self.open_one()
            times.append(ms)
            ids.append(loan_id)
        await asyncio.gather(*(signal_cancel(self.client, i, Cancel(reason="bench")) for i in ids))
        return p50(times)


async def reconcile_seconds(clients: Clients, client: Any, pool_id: str) -> float:
    t0 = time.perf_counter()
    run = await reconcile_now(
        client, clients.settings, pool_ids=[pool_id], run_timeout=timedelta(minutes=30)
    )
    if run.failures:
        raise RuntimeError(f"reconcile failed: {run.failures}")
    return time.perf_counter() - t0


async def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--waiting", default="1000,5000", help="waiting-loan levels")
    parser.add_argument("--reconcile", default="100,1000,10000", help="open-reservation levels")
    parser.add_argument(
        "--xdr-at", type=int, default=5000, help="waiting loans for the busy time-to-XDR"
    )
    parser.add_argument("--pools", default="1,12,120")
    parser.add_argument("--xdr-samples", type=int, default=60)
    parser.add_argument("--reserve-samples", type=int, default=3000)
    args = parser.parse_args()
    waiting_levels = [int(x) for x in args.waiting.split(",")]
    reconcile_levels = [int(x) for x in args.reconcile.split(",")]
    pool_levels = [int(x) for x in args.pools.split(",")]

    ledger_cmp = await ledger_cluster_vs_single(args.reserve_samples)
    print(
        f"reserve p50: single {ledger_cmp['single_ms']:.3f} ms, cluster "
        f"{ledger_cmp['cluster_ms']:.3f} ms",
        flush=True,
    )

    cli = shutil.which("temporal", path=str(Path(sys.executable).parent)) or "temporal"
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=cli,
        search_attributes=list(LOAN_SEARCH_ATTRIBUTES),
        data_converter=pydantic_data_converter,
        dev_server_log_level="error",
    )
    devnet = start_devnet(
        ledger_interval=0.5,
        passphrase=PASSPHRASE,
        default_reputation=100,
        vendors_active_by_default=True,
    )
    prefix = f"bench-scale-{uuid.uuid4().hex[:10]}"
    settings = Settings(
        _env_file=None,
        redis_url=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        ledger_prefix=prefix,
        temporal_address=env.client.service_client.config.target_host,
        task_queue=f"scale-{uuid.uuid4().hex[:8]}",
        rpc_url=devnet.rpc_url,
        network_passphrase=devnet.passphrase,
        pools={},
        settlement_grace_seconds=2,
        reservation_ttl_seconds=6 * 3600,  # no waiting loan expires during the run
        reconcile_schedule_enabled=False,
        borrower_limit_stroops=10**15,
    )
    clients = Clients.open(settings)
    sup = Supervisor(Path(tempfile.mkdtemp(prefix="bench-scale-")))
    out: dict[str, Any] = {"reserve": ledger_cmp}
    try:
        passes = await watcher_passes(clients, env.client, pool_levels)
        print(
            "watcher pass p50 ms: " + ", ".join(f"{n} pools {v:.1f}" for n, v in passes.items()),
            flush=True,
        )
        most = max(waiting_levels + reconcile_levels)
        pool = await deploy_pool(
            settings.rpc_url,
            settings.network_passphrase,
            liquidity=(most + 4 * args.xdr_samples + 100) * FUNDED,
        )
        settings.pools[pool.pool_id] = pool.creditline_id
        await establish_pool(clients.ledger, clients.chain, pool.pool_id)
        worker = sup.start(
            "worker",
            [sys.executable, str(ROOT / "worker.py")],
            settings_env(settings),
            Path(tempfile.gettempdir()),  # no developer's .run/stack.env leaks in
        )
        loans = Loans(clients, env.client, pool)
        await loans.fund(30)
        for _ in range(30):  # warm-up: imports, sandbox, caches (then cancelled)
            loan_id, _ = await loans.open_one()
            await signal_cancel(env.client, loan_id, Cancel(reason="warm-up"))
        await asyncio.sleep(2)
        rss = {0: rss_mb(worker.pid)}
        xdr_none = await loans.xdr_p50(args.xdr_samples)
        print(
            f"0 waiting: worker RSS {rss[0]:.0f} MB, time-to-XDR p50 {xdr_none:.1f} ms", flush=True
        )
        recon: dict[int, float] = {}
        xdr_busy, xdr_level = float("nan"), 0
        for level in sorted(set(waiting_levels + reconcile_levels + [args.xdr_at])):
            t0 = time.perf_counter()
            await loans.grow_to(level)
            opened = time.perf_counter() - t0
            line = f"{level} waiting (opened in {opened:.0f} s):"
            if level in reconcile_levels:
                recon[level] = await reconcile_seconds(clients, env.client, pool.pool_id)
                line += f" reconcile {recon[level]:.2f} s"
            if level in waiting_levels:
                await asyncio.sleep(2)
                rss[level] = rss_mb(worker.pid)
                line += f" worker RSS {rss[level]:.0f} MB"
            if level == args.xdr_at:
                xdr_level = len(loans.open_ids)
                xdr_busy = await loans.xdr_p50(args.xdr_samples)
                line += f" time-to-XDR p50 {xdr_busy:.1f} ms"
            print(line, flush=True)
        out.update(
            watcher_pass_ms={str(k): round(v, 2) for k, v in passes.items()},
            worker_rss_mb={str(k): round(v, 1) for k, v in rss.items()},
            reconcile_s={str(k): round(v, 3) for k, v in recon.items()},
            xdr_p50_ms={
                "none": round(xdr_none, 1),
                str(xdr_level): round(xdr_busy, 1),
                "ratio": round(xdr_busy / xdr_none, 3),
            },
        )
    finally:
        sup.stop_all(grace=15)
        await clients.chain.close()
        async for key in clients.redis.scan_iter(match=f"{prefix}*", count=1000):
            await clients.redis.delete(key)
        await clients.redis.aclose()
        devnet.stop()
        await env.shutdown()

    r = out["reserve"]
    rows = [
        ("reserve p50, single node", f"{r['single_ms']:.3f} ms", ""),
        (
            "reserve p50, 3-master cluster",
            f"{r['cluster_ms']:.3f} ms",
            f"{r['ratio']:.2f}x single (target <= 1.3)",
        ),
    ]
    pk = sorted(int(k) for k in out["watcher_pass_ms"])
    pv = [out["watcher_pass_ms"][str(k)] for k in pk]
    rows += [
        (f"watcher pass p50, {k} pools", f"{v:.1f} ms", "") for k, v in zip(pk, pv, strict=True)
    ]
    rows.append(("  growth with pools", growth([float(k) for k in pk], pv), ""))
    ck = sorted(int(k) for k in out["reconcile_s"])
    cv = [out["reconcile_s"][str(k)] for k in ck]
    rows += [
        (f"reconcile run, {k} open reservations", f"{v:.2f} s", "")
        for k, v in zip(ck, cv, strict=True)
    ]
    rows.append(("  growth with reservations", growth([float(k) for k in ck], cv), ""))
    mk = sorted(int(k) for k in out["worker_rss_mb"])
    mv = [out["worker_rss_mb"][str(k)] for k in mk]
    rows += [
        (f"worker RSS, {k} loans waiting", f"{v:.0f} MB", "") for k, v in zip(mk, mv, strict=True)
    ]
    # KB per waiting loan up to the first level: the worker's workflow cache (the SDK's
    # max_cached_workflows) holds that many; beyond it, the class says what more loans add
    first = next((i for i, k in enumerate(mk) if k > 0), 0)
    per_loan_kb = (mv[first] - mv[0]) / max(mk[first], 1) * 1024
    # the class of what the waiting loans add on top of the idle worker
    added = [(k, v - mv[0]) for k, v in zip(mk, mv, strict=True) if k > 0]
    rss_class = (
        growth([float(k) for k, _ in added], [max(d, 1e-9) for _, d in added])
        if len(added) >= 2 and added[0][1] > 0
        else "constant"
    )
    rows.append(
        (
            "  growth with waiting loans",
            f"{rss_class} from {mk[first]}; +{per_loan_kb:.0f} KB per loan up to it",
            "",
        )
    )
    x = out["xdr_p50_ms"]
    busy_key = next(k for k in x if k not in ("none", "ratio"))
    rows += [
        ("time-to-XDR p50, none waiting", f"{x['none']:.1f} ms", ""),
        (
            f"time-to-XDR p50, {busy_key} waiting",
            f"{x[busy_key]:.1f} ms",
            f"{x['ratio']:.2f}x (target <= 1.2)",
        ),
    ]
    out["growth"] = {
        "watcher_pass_by_pools": growth([float(k) for k in pk], pv),
        "reconcile_by_open_reservations": growth([float(k) for k in ck], cv),
        "worker_rss_by_waiting_loans": rss_class,
        "worker_rss_kb_per_loan_up_to_first_level": round(per_loan_kb, 2),
        "xdr_p50_by_waiting_loans": "constant" if x["ratio"] < 1.5 else "grows",
        "reserve_cluster_vs_single": round(r["ratio"], 3),
    }
    print(f"\n{'figure':42} {'measured':>14}  note")
    for name, value, note in rows:
        print(f"{name:42} {value:>14}  {note}")
    return out


if __name__ == "__main__":
    unwind_on_stop_signals()  # the servers this run started are stopped by its finally blocks
    result = asyncio.run(main())
    print(json.dumps(result), flush=True)
    exit_skipping_teardown(0)
