"""Real Redis topologies from the machine's `redis-server`, on free ports, for tests and benchmarks:
a 3-master Redis Cluster, and a Sentinel group (primary + replica + sentinels).

Every server is a child process of ours (never daemonized), so it is stopped by its own PID,
and its files live under a directory the caller owns. Nothing here is used by the product: a
deployment points REDIS_URL / REDIS_SENTINELS at servers somebody else runs."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tools.procs import free_port, port_is_free


def redis_server() -> str:
    path = shutil.which("redis-server")
    if path is None:
        raise RuntimeError("redis-server is not on PATH (Debian: apt-get install redis-server)")
    return path


def _ping(port: int, timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _command(port: int, *args: str, timeout: float = 2.0) -> str:
    """One command over a raw socket (RESP array), the reply's first line: enough to steer test
    servers without a client library and without depending on redis-cli."""
    payload = f"*{len(args)}\r\n".encode() + b"".join(
        f"${len(a.encode())}\r\n".encode() + a.encode() + b"\r\n" for a in args
    )
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(payload)
        data = b""
        deadline = time.monotonic() + timeout
        while b"\r\n" not in data and time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        if data.startswith(b"$"):  # bulk string: read the whole body
            size = int(data[1 : data.index(b"\r\n")])
            head = data.index(b"\r\n") + 2
            while size >= 0 and len(data) < head + size and time.monotonic() < deadline:
                data += s.recv(65536)
            return data[head : head + max(size, 0)].decode()
        return data.split(b"\r\n", 1)[0].decode()


@dataclass
class Server:
    port: int
    proc: subprocess.Popen[bytes]
    workdir: Path
    extra: tuple[str, ...] = ()
    config: str | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL by PID: the fault a failover test injects."""
        if self.alive():
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def command(self, *args: str) -> str:
        return _command(self.port, *args)


def start_server(workdir: Path, port: int, *extra: str, config: str | None = None) -> Server:
    """redis-server in the foreground as our child, no persistence, bound to 127.0.0.1."""
    workdir.mkdir(parents=True, exist_ok=True)
    args = [redis_server()]
    if config is not None:
        args.append(config)
    args += [
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(workdir),
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
        "--logfile",
        str(workdir / "redis.log"),
        *extra,
    ]
    if "--sentinel" not in extra:
        # A replica's full sync starts at once instead of after the default 5 s delay.
        args += ["--repl-diskless-sync-delay", "0"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = Server(port=port, proc=proc, workdir=workdir, extra=extra, config=config)
    deadline = time.monotonic() + 10
    while not _ping(port):
        if not server.alive() or time.monotonic() > deadline:
            log = workdir / "redis.log"
            tail = log.read_text(errors="replace")[-800:] if log.exists() else ""
            server.stop()
            raise RuntimeError(f"redis-server on port {port} did not start: {tail}")
        time.sleep(0.05)
    return server


def restart(server: Server) -> Server:
    """The same server (port, directory, options) started again after a kill."""
    return start_server(server.workdir, server.port, *server.extra, config=server.config)


@dataclass
class Cluster:
    servers: list[Server] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.servers[0].port}/0"

    def stop(self) -> None:
        for server in reversed(self.servers):
            server.stop()


def start_cluster(root: Path, masters: int = 3) -> Cluster:
    """`masters` cluster-enabled nodes, the 16384 slots split evenly, `cluster_state:ok`.

    The slots are assigned with CLUSTER ADDSLOTSRANGE and the nodes introduced with CLUSTER
    MEET: what `redis-cli --cluster create` does, without needing redis-cli."""
    cluster = Cluster()
    try:
        for _ in range(masters):
            port = cluster_port()
            node_dir = (root / f"node-{port}").resolve()
            cluster.servers.append(
                start_server(
                    node_dir,
                    port,
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    str(node_dir / "nodes.conf"),
                    "--cluster-node-timeout",
                    "5000",
                )
            )
        per = 16384 // masters
        for i, server in enumerate(cluster.servers):
            low = i * per
            high = 16383 if i == masters - 1 else (i + 1) * per - 1
            reply = server.command("CLUSTER", "ADDSLOTSRANGE", str(low), str(high))
            if reply != "+OK":
                raise RuntimeError(f"ADDSLOTSRANGE on {server.port}: {reply}")
        first = cluster.servers[0]
        for server in cluster.servers[1:]:
            first.command("CLUSTER", "MEET", "127.0.0.1", str(server.port))
        deadline = time.monotonic() + 20
        while True:
            states = [s.command("CLUSTER", "INFO") for s in cluster.servers]
            if all("cluster_state:ok" in st for st in states):
                known = [int(_field(st, "cluster_known_nodes")) for st in states]
                if all(k == masters for k in known):
                    return cluster
            if time.monotonic() > deadline:
                raise RuntimeError(f"cluster did not reach cluster_state:ok: {states}")
            time.sleep(0.1)
    except BaseException:
        cluster.stop()
        raise


def cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too; Redis refuses > 55535."""
    for _ in range(200):
        port = random.randint(20000, 45000)
        if port_is_free(port) and port_is_free(port + 10000):
            return port
    raise RuntimeError("no free port pair for a cluster node")


def _field(info: str, name: str) -> str:
    for line in info.splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    return ""


@dataclass
class SentinelGroup:
    """A primary, its replicas and the sentinels watching them, under service `service`."""

    service: str
    primary: Server
    replicas: list[Server]
    sentinels: list[Server]

    @property
    def sentinel_addresses(self) -> str:
        """The REDIS_SENTINELS value: host:port,host:port,..."""
        return ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)

    def master_port(self) -> int | None:
        """The port the sentinels currently name as the primary."""
        for sentinel in self.sentinels:
            if not sentinel.alive():
                continue
            try:
                reply = _raw_array(
                    sentinel.port, "SENTINEL", "get-master-addr-by-name", self.service
                )
            except OSError:
                continue
            if len(reply) == 2:
                return int(reply[1])
        return None

    def wait_master_not(self, port: int, within: float = 30) -> int:
        """Wait until the sentinels promoted another server than `port`; its port."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            current = self.master_port()
            if current is not None and current != port:
                server = self.by_port(current)
                if server is not None and "role:master" in server.command("INFO", "replication"):
                    return current
            time.sleep(0.1)
        raise RuntimeError(f"the sentinels did not promote a replica of {port} within {within}s")

    def by_port(self, port: int) -> Server | None:
        for server in [self.primary, *self.replicas]:
            if server.port == port:
                return server
        return None

    def stop(self) -> None:
        for server in [*self.sentinels, *self.replicas, self.primary]:
            server.stop()


def _raw_array(port: int, *args: str, timeout: float = 2.0) -> list[str]:
    """A command whose reply is a flat array of bulk strings (SENTINEL get-master-addr-...)."""
    payload = f"*{len(args)}\r\n".encode() + b"".join(
        f"${len(a.encode())}\r\n".encode() + a.encode() + b"\r\n" for a in args
    )
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(payload)
        time.sleep(0.02)
        data = s.recv(65536)
    lines = data.split(b"\r\n")
    if not lines or not lines[0].startswith(b"*") or lines[0] == b"*-1":
        return []
    return [line.decode() for line in lines[1:] if line and not line.startswith(b"$")]


def start_sentinel_group(
    root: Path,
    *,
    service: str = "ledger",
    replicas: int = 1,
    sentinels: int = 3,
    down_after_ms: int = 1000,
) -> SentinelGroup:
    """A primary with `replicas` replicas and `sentinels` sentinels (quorum: a majority)."""
    started: list[Server] = []
    try:
        primary = start_server((root / "primary").resolve(), free_port())
        started.append(primary)
        reps: list[Server] = []
        for i in range(replicas):
            rep = start_server(
                (root / f"replica-{i}").resolve(),
                free_port(),
                "--replicaof",
                "127.0.0.1",
                str(primary.port),
            )
            started.append(rep)
            reps.append(rep)
        deadline = time.monotonic() + 20
        while primary.command("INFO", "replication").count("state=online") < replicas:
            if time.monotonic() > deadline:
                raise RuntimeError("the replicas did not connect to the primary")
            time.sleep(0.05)
        sents: list[Server] = []
        quorum = sentinels // 2 + 1
        for i in range(sentinels):
            sdir = (root / f"sentinel-{i}").resolve()
            sdir.mkdir(parents=True, exist_ok=True)
            conf = sdir / "sentinel.conf"
            conf.write_text(
                f"sentinel monitor {service} 127.0.0.1 {primary.port} {quorum}\n"
                f"sentinel down-after-milliseconds {service} {down_after_ms}\n"
                f"sentinel failover-timeout {service} 10000\n"
                f"sentinel parallel-syncs {service} 1\n"
            )
            sent = start_server(sdir, free_port(), "--sentinel", config=str(conf))
            started.append(sent)
            sents.append(sent)
        group = SentinelGroup(service=service, primary=primary, replicas=reps, sentinels=sents)
        deadline = time.monotonic() + 20
        while True:  # every sentinel knows the replicas and the other sentinels
            ok = all(_sentinel_counts(s.port, service) == (replicas, sentinels - 1) for s in sents)
            if ok:
                return group
            if time.monotonic() > deadline:
                raise RuntimeError("the sentinels did not discover each other and the replicas")
            time.sleep(0.2)
    except BaseException:
        for server in reversed(started):
            server.stop()
        raise


def _sentinel_counts(port: int, service: str) -> tuple[int, int]:
    reply = _raw_array(port, "SENTINEL", "MASTER", service)
    pairs = dict(zip(reply[0::2], reply[1::2], strict=False))
    return int(pairs.get("num-slaves", 0)), int(pairs.get("num-other-sentinels", 0))
