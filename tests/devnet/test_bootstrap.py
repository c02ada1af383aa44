"""The bootstrap command the demo and the stack run against a fresh devnet."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from core.money import UNIT
from devnet.kit import token_balance


async def test_bootstrap_deploys_and_funds(devnet, chain_client, tmp_path: Path) -> None:
    out = tmp_path / "boot.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "devnet.bootstrap",
        "--rpc-url",
        devnet.rpc_url,
        "--passphrase",
        devnet.passphrase,
        "--liquidity",
        "250.5",
        "--borrowers",
        "2",
        "--borrower-tokens",
        "10",
        "--out",
        str(out),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, stderr.decode()
    data = json.loads(out.read_text())
    assert data["pool_id"] in stdout.decode() and data["creditline_id"] in stdout.decode()
    stats = await chain_client.pool_stats(data["pool_id"])
    assert stats.total_liquidity == 2505 * UNIT // 10 and stats.locked_liquidity == 0
    assert len(data["borrowers"]) == 2 and data["vendor"].startswith("G")
    for b in data["borrowers"]:
        assert (
            await token_balance(devnet.rpc_url, devnet.passphrase, data["token_id"], b["public"])
            == 10 * UNIT
        )
