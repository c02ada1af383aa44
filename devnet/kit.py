"""Devnet admin and test kit: start a devnet process, fund accounts, deploy pools, and drive the
contracts with real signed transactions. Used by tests, the demo, the benchmark and the stack.

The funding and deploy calls use devnet-only RPC methods (`devnet_fund`, `devnet_deployPool`):
they do not exist on testnet. Everything else goes through ordinary signed transactions."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from pydantic import BaseModel
from stellar_sdk import Keypair, SorobanServerAsync, TransactionBuilder, scval
from stellar_sdk import xdr as sx
from stellar_sdk.exceptions import PrepareTransactionException

from chain import decode
from chain.client import ChainClient, loan_args
from chain.errors import ChainRefusal
from chain.types import TxStatus
from core.models import LoanTerms
from core.net import free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_XLM = 10_000 * 10_000_000  # 10k XLM in stroops: plenty for fees


class DevnetError(RuntimeError):
    """A devnet-only admin call failed (bad params, or not a devnet)."""


class DeployedPool(BaseModel):
    pool_id: str
    creditline_id: str
    token_id: str
    admin_public: str
    admin_secret: str
    lp_public: str = ""  # the liquidity provider whose deposit seeded the pool
    lp_secret: str = ""


# -- the process ---------------------------------------------------------------------------------
@dataclass
class DevnetProcess:
    """A `python -m devnet` child process; stop it with `stop()` (by its own PID)."""

    rpc_url: str
    passphrase: str
    pid: int
    port: int
    _proc: subprocess.Popen[bytes] = field(repr=False)

    def stop(self, timeout: float = 5) -> None:
        if self._proc.poll() is not None:
            return
        os.kill(self.pid, signal.SIGTERM)
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.pid, signal.SIGKILL)
            self._proc.wait(timeout)


def start_devnet(
    *,
    ledger_interval: float = 0.5,
    passphrase: str | None = None,
    port: int | None = None,
    startup_timeout: float = 20,
    log_path: str | None = None,
    retention_ledgers: int | None = None,
    default_reputation: int | None = None,
    vendors_active_by_default: bool = False,
) -> DevnetProcess:
    """Start a devnet on a free 127.0.0.1 port and wait until GET /health answers.
    `retention_ledgers`: how many recent ledgers of history it serves (default: Soroban RPC's).
    `default_reputation` / `vendors_active_by_default`: permissive answers of the reputation
    store and the vendor registry for accounts nobody registered (StepFi's: 0 and inactive)."""
    from core.settings import get_settings

    phrase = passphrase or get_settings().network_passphrase
    last_error = ""
    for _ in range(3):  # another process may grab the port between probe and bind
        chosen = port or free_port()
        log = open(log_path, "ab") if log_path else subprocess.DEVNULL
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "devnet",
                "--port",
                str(chosen),
                "--ledger-interval",
                str(ledger_interval),
                "--passphrase",
                phrase,
                *(
                    ["--retention-ledgers", str(retention_ledgers)]
                    if retention_ledgers is not None
                    else []
                ),
                *(
                    ["--default-reputation", str(default_reputation)]
                    if default_reputation is not None
                    else []
                ),
                *(["--vendors-active-by-default"] if vendors_active_by_default else []),
            ],
            stdout=log,
            stderr=log,
            cwd=REPO_ROOT,  # the devnet is not installed with the product: run it from the tree
        )
        deadline = time.monotonic() + startup_timeout
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{chosen}/health", timeout=1):
                    return DevnetProcess(
                        f"http://127.0.0.1:{chosen}/", phrase, proc.pid, chosen, proc
                    )
            except OSError as exc:
                last_error = str(exc)
                time.sleep(0.1)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if port is not None:
            break
    raise RuntimeError(f"devnet did not become healthy: {last_error}")


# -- devnet-only admin calls ------------------------------------------------------------------
async def devnet_call(rpc_url: str, method: str, params: dict[str, Any]) -> Any:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    async with aiohttp.ClientSession() as session, session.post(rpc_url, json=body) as resp:
        payload = await resp.json()
    if payload.get("error"):
        raise DevnetError(f"{method}: {payload['error'].get('message')}")
    return payload["result"]


async def fund_account(
    rpc_url: str,
    public_key: str,
    *,
    xlm: int = DEFAULT_XLM,
    token_id: str | None = None,
    token_amount: int = 0,
) -> None:
    """Friendbot: create/top up `public_key` with XLM (stroops) and optionally pool tokens."""
    await devnet_call(
        rpc_url,
        "devnet_fund",
        {"account": public_key, "xlm": xlm, "tokenId": token_id, "tokenAmount": token_amount},
    )


async def set_vendor(rpc_url: str, vendor: str, *, active: bool = True) -> None:
    """The vendor registry's admin approves (or suspends) `vendor`."""
    await devnet_call(rpc_url, "devnet_setVendor", {"vendor": vendor, "active": active})


async def set_reputation(rpc_url: str, user: str, score: int) -> None:
    """The reputation contract's updater sets `user`'s score (0-100; StepFi's threshold is 50)."""
    await devnet_call(rpc_url, "devnet_setReputation", {"user": user, "score": score})


async def new_funded_keypair(
    rpc_url: str, *, token_id: str | None = None, token_amount: int = 0
) -> Keypair:
    keypair = Keypair.random()
    await fund_account(rpc_url, keypair.public_key, token_id=token_id, token_amount=token_amount)
    return keypair


# -- real signed transactions -----------------------------------------------------------------
async def wait_for_tx(client: ChainClient, tx_hash: str, timeout: float = 10) -> TxStatus:  # noqa: ASYNC109
    """Poll getTransaction until the transaction is in a ledger (or `timeout` seconds pass)."""
    deadline = time.monotonic() + timeout
    while True:
        status = await client.transaction(tx_hash)
        if status.status != "not_found" or time.monotonic() >= deadline:
            return status
        await asyncio.sleep(0.1)


async def invoke(
    rpc_url: str,
    passphrase: str,
    secret: str,
    contract_id: str,
    function: str,
    args: list[sx.SCVal],
    *,
    timeout: float = 10,  # noqa: ASYNC109
) -> TxStatus:
    """Build, prepare (simulate), sign as `secret`, submit and wait: a wallet in one call.

    Raises ChainRefusal when simulation refuses or the submission is rejected."""
    keypair = Keypair.from_secret(secret)
    server = SorobanServerAsync(rpc_url)
    client = ChainClient(rpc_url, passphrase)
    try:
        account = await server.load_account(keypair.public_key)
        tx = (
            TransactionBuilder(account, passphrase, 100)
            .append_invoke_contract_function_op(contract_id, function, args)
            .set_timeout(60)
            .build()
        )
        try:
            prepared = await server.prepare_transaction(tx)
        except PrepareTransactionException as exc:
            text = exc.simulate_transaction_response.error or str(exc)
            reason, detail = decode.decode_simulation_error(text, contract_id, function)
            raise ChainRefusal(reason, detail) from exc
        prepared.sign(keypair)
        sent = await client.submit(prepared.to_xdr())
        if sent.status == "error":
            raise ChainRefusal(sent.reason or decode.FailureReason.UNKNOWN, sent.detail)
        return await wait_for_tx(client, sent.tx_hash, timeout)
    finally:
        await server.close()
        await client.close()


async def deposit(
    rpc_url: str, passphrase: str, pool_id: str, provider_secret: str, amount: int
) -> TxStatus:
    provider = Keypair.from_secret(provider_secret).public_key
    return await invoke(
        rpc_url,
        passphrase,
        provider_secret,
        pool_id,
        "deposit",
        [scval.to_address(provider), scval.to_int128(amount)],
    )


async def withdraw(
    rpc_url: str, passphrase: str, pool_id: str, provider_secret: str, shares: int
) -> TxStatus:
    provider = Keypair.from_secret(provider_secret).public_key
    return await invoke(
        rpc_url,
        passphrase,
        provider_secret,
        pool_id,
        "withdraw",
        [scval.to_address(provider), scval.to_int128(shares)],
    )


async def repay_loan(
    rpc_url: str,
    passphrase: str,
    creditline_id: str,
    borrower_secret: str,
    chain_loan_id: int,
    amount: int,
) -> TxStatus:
    borrower = Keypair.from_secret(borrower_secret).public_key
    return await invoke(
        rpc_url,
        passphrase,
        borrower_secret,
        creditline_id,
        "repay_loan",
        [scval.to_address(borrower), scval.to_uint64(chain_loan_id), scval.to_int128(amount)],
    )


async def create_loan_direct(
    rpc_url: str, passphrase: str, creditline_id: str, terms: LoanTerms, borrower_secret: str
) -> TxStatus:
    """A loan created on chain around the API (what the reconciler must notice)."""
    return await invoke(
        rpc_url, passphrase, borrower_secret, creditline_id, "create_loan", loan_args(terms)
    )


async def deploy_pool(
    rpc_url: str,
    network_passphrase: str,
    *,
    liquidity: int,
    min_guarantee_bps: int | None = None,
    vendor_registry: bool | str = True,
    credit_limit_unit: int | None = None,
) -> DeployedPool:
    """Deploy token + pool + creditline and seed `liquidity` stroops through a real, signed
    `deposit` transaction from a fresh LP account. `vendor_registry`: the devnet's (True),
    none (False: create_loan fails #16), or the contract at that id."""
    admin = await new_funded_keypair(rpc_url)
    params: dict[str, Any] = {"admin": admin.public_key, "vendorRegistry": vendor_registry}
    if min_guarantee_bps is not None:
        params["minGuaranteeBps"] = min_guarantee_bps
    if credit_limit_unit is not None:
        params["creditLimitUnit"] = credit_limit_unit
    ids = await devnet_call(rpc_url, "devnet_deployPool", params)
    lp = await new_funded_keypair(rpc_url, token_id=ids["tokenId"], token_amount=liquidity)
    pool = DeployedPool(
        pool_id=ids["poolId"],
        creditline_id=ids["creditlineId"],
        token_id=ids["tokenId"],
        admin_public=admin.public_key,
        admin_secret=admin.secret,
        lp_public=lp.public_key,
        lp_secret=lp.secret,
    )
    if liquidity > 0:
        status = await deposit(rpc_url, network_passphrase, pool.pool_id, lp.secret, liquidity)
        if status.status != "success":
            raise DevnetError(f"seed deposit failed: {status}")
    return pool


async def token_balance(rpc_url: str, passphrase: str, token_id: str, who: str) -> int:
    client = ChainClient(rpc_url, passphrase)
    try:
        value, _ = await client.simulate_read(token_id, "balance", [scval.to_address(who)])
        return int(value)
    finally:
        await client.close()
