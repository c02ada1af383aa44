"""`python -m tools.keys` against the Redis the API reads: a key created from the shell works at
once on every API process (here the test API and a second `uvicorn api.app:app` process), and
revoked from the shell it is refused by both within a second."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.api.credentials import bearer, key_secret
from tools.procs import free_port

ROOT = Path(__file__).resolve().parents[2]


def cli(settings: Any, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "REDIS_URL": settings.redis_url,
        "LEDGER_PREFIX": settings.ledger_prefix,
    }
    return subprocess.run(
        [sys.executable, "-m", "tools.keys", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def start_api(settings: Any, port: int, cwd: Path) -> subprocess.Popen[bytes]:
    """`uvicorn api.app:app` reading `settings` from its environment, as a stack runs it."""
    env = {**os.environ, **settings.as_env(), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "api.app:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the second API exited"
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("the second API did not start")


async def test_cli_create_list_revoke_seen_by_every_api_process(
    api_server: Any, anon: httpx.AsyncClient, tmp_path: Path
) -> None:
    """Async: the test API serves from this very event loop, so it is called without blocking
    it (the CLI's subprocess runs do not talk to it)."""
    settings = api_server.settings
    port = free_port()
    second_url = f"http://127.0.0.1:{port}"
    proc = start_api(settings, port, tmp_path)
    try:
        wait_ready(second_url, proc)
        made = cli(
            settings,
            tmp_path,
            "create",
            "--name",
            "from the shell",
            "--scopes",
            "operator,pools:read",
        )
        assert made.returncode == 0, made.stderr
        token = re.search(r"^key\s+(lsk_\S+)$", made.stdout, re.M)
        key_id = re.search(r"^id\s+([0-9a-f]{16})$", made.stdout, re.M)
        assert token and key_id, made.stdout
        urls = (api_server.base_url, second_url)
        for url in urls:
            resp = await anon.get(f"{url}/v1/admin/keys", headers=bearer(token[1]))
            assert resp.status_code == 200

        listed = cli(settings, tmp_path, "list")
        assert key_id[1] in listed.stdout and key_secret(token[1]) not in listed.stdout

        revoked = cli(settings, tmp_path, "revoke", key_id[1])
        assert revoked.returncode == 0, revoked.stderr
        start = time.monotonic()
        for url in urls:
            while (
                await anon.get(f"{url}/v1/admin/keys", headers=bearer(token[1]))
            ).status_code != 401:
                assert time.monotonic() - start < 1.0, f"{url} still accepts a revoked key"
                await asyncio.sleep(0.05)

        bad = cli(settings, tmp_path, "create", "--name", "x", "--scopes", "loans:everything")
        assert bad.returncode == 2 and "unknown scope" in bad.stderr
        assert cli(settings, tmp_path, "revoke", "0" * 16).returncode == 1
    finally:
        proc.terminate()
        proc.wait(timeout=15)
