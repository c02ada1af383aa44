"""HTTP face of the devnet: Soroban RPC JSON-RPC 2.0 at POST / and /rpc, plus devnet-only extras.

Devnet-only (never on a real network): JSON-RPC methods `devnet_fund`, `devnet_deployPool`,
`devnet_closeLedger`, `devnet_setVendor {vendor, active}`, `devnet_setReputation {user, score}`,
`devnet_tryAgainLater {count}` (the next `count` sendTransaction calls answer TRY_AGAIN_LATER),
`devnet_bumpSequence {account, sequence}` (knock an account's sequence forward);
HTTP `GET /health` (readiness) and `GET /friendbot?addr=G...`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from devnet.ledger import FRIENDBOT_XLM, PROTOCOL_VERSION, Chain, RpcError

log = logging.getLogger("devnet")

Params = dict[str, Any]


def _params(raw: Any) -> Params:
    if raw is None:
        return {}
    if isinstance(raw, dict):
        return raw
    raise RpcError(-32602, "params must be an object")


class DevnetServer:
    def __init__(self, chain: Chain, *, ledger_interval: float, public_url: str) -> None:
        self.chain = chain
        self.ledger_interval = ledger_interval
        self.public_url = public_url.rstrip("/")
        self.methods: dict[str, Callable[[Params], Any]] = {
            "getHealth": self.get_health,
            "getNetwork": self.get_network,
            "getLatestLedger": lambda p: chain.latest_info(),
            "getVersionInfo": self.get_version_info,
            "getFeeStats": self.get_fee_stats,
            "getLedgerEntries": lambda p: chain.get_ledger_entries(p.get("keys")),
            "simulateTransaction": lambda p: chain.simulate(p.get("transaction")),
            "sendTransaction": lambda p: chain.submit(p.get("transaction")),
            "getTransaction": lambda p: chain.get_transaction(p.get("hash")),
            "getEvents": chain.get_events,
            # devnet-only
            "devnet_fund": self.fund,
            "devnet_deployPool": self.deploy_pool,
            "devnet_closeLedger": lambda p: {"sequence": chain.close_ledger()},
            "devnet_setVendor": self.set_vendor,
            "devnet_setReputation": self.set_reputation,
            "devnet_tryAgainLater": self.try_again_later,
            "devnet_bumpSequence": self.bump_sequence,
        }

    # -- methods -----------------------------------------------------------------------------------
    def get_health(self, _: Params) -> dict[str, Any]:
        return {
            "status": "healthy",
            "latestLedger": self.chain.latest,
            "oldestLedger": self.chain.oldest,
            "ledgerRetentionWindow": self.chain.retention,
        }

    def get_network(self, _: Params) -> dict[str, Any]:
        return {
            "friendbotUrl": f"{self.public_url}/friendbot",
            "passphrase": self.chain.passphrase,
            "protocolVersion": PROTOCOL_VERSION,
        }

    def get_version_info(self, _: Params) -> dict[str, Any]:
        return {
            "version": "liquidity-saga-devnet",
            "commitHash": "",
            "buildTimestamp": "",
            "captiveCoreVersion": "none (python model)",
            "protocolVersion": PROTOCOL_VERSION,
        }

    def get_fee_stats(self, _: Params) -> dict[str, Any]:
        base = self.chain.base_fee
        dist = {
            k: str(base)
            for k in (
                "max",
                "min",
                "mode",
                "p10",
                "p20",
                "p30",
                "p40",
                "p50",
                "p60",
                "p70",
                "p80",
                "p90",
                "p95",
                "p99",
            )
        }
        dist |= {"transactionCount": "0", "ledgerCount": "1"}
        return {
            "sorobanInclusionFee": dist,
            "inclusionFee": dist,
            "latestLedger": self.chain.latest,
        }

    def fund(self, p: Params) -> dict[str, Any]:
        account = p.get("account")
        xlm = p.get("xlm") if p.get("xlm") is not None else FRIENDBOT_XLM
        amount = p.get("tokenAmount") or 0
        if not isinstance(account, str) or not isinstance(xlm, int) or not isinstance(amount, int):
            raise RpcError(
                -32602, "devnet_fund: {account: G..., xlm?: int, tokenId?, tokenAmount?}"
            )
        self.chain.fund(account, xlm, p.get("tokenId"), amount)
        return {"account": account, "latestLedger": self.chain.latest}

    def deploy_pool(self, p: Params) -> dict[str, Any]:
        admin = p.get("admin")
        if not isinstance(admin, str):
            raise RpcError(-32602, "devnet_deployPool: {admin: G...}")
        bps = p.get("minGuaranteeBps")
        registry = p.get("vendorRegistry", True)
        unit, min_rep = p.get("creditLimitUnit"), p.get("minReputation")
        if not isinstance(registry, bool | str) or registry is None:
            raise RpcError(-32602, "devnet_deployPool: vendorRegistry is true, false or C...")
        return self.chain.deploy_pool(
            admin,
            bps if isinstance(bps, int) else None,
            vendor_registry=registry,
            credit_limit_unit=unit if isinstance(unit, int) and unit > 0 else None,
            min_reputation=min_rep if isinstance(min_rep, int) else None,
        )

    def set_vendor(self, p: Params) -> dict[str, Any]:
        vendor, active = p.get("vendor"), p.get("active")
        if not isinstance(vendor, str) or not isinstance(active, bool):
            raise RpcError(-32602, "devnet_setVendor: {vendor: G..., active: bool}")
        self.chain.set_vendor(vendor, active)
        return {"vendor": vendor, "active": active, "latestLedger": self.chain.latest}

    def set_reputation(self, p: Params) -> dict[str, Any]:
        user, score = p.get("user"), p.get("score")
        if not isinstance(user, str) or not isinstance(score, int) or isinstance(score, bool):
            raise RpcError(-32602, "devnet_setReputation: {user: G..., score: int}")
        self.chain.set_reputation(user, score)
        return {"user": user, "score": score, "latestLedger": self.chain.latest}

    def try_again_later(self, p: Params) -> dict[str, Any]:
        count = p.get("count")
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise RpcError(-32602, "devnet_tryAgainLater: {count: int >= 0}")
        self.chain.try_again_later = count
        return {"count": count, "latestLedger": self.chain.latest}

    def bump_sequence(self, p: Params) -> dict[str, Any]:
        account, sequence = p.get("account"), p.get("sequence")
        if not isinstance(account, str) or not isinstance(sequence, int):
            raise RpcError(-32602, "devnet_bumpSequence: {account: G..., sequence: int}")
        self.chain.bump_sequence(account, sequence)
        return {"account": account, "sequence": sequence, "latestLedger": self.chain.latest}

    # -- HTTP ---------------------------------------------------------------------------------
    def _dispatch(self, body: Any) -> dict[str, Any]:
        req_id = body.get("id") if isinstance(body, dict) else None
        if not isinstance(body, dict) or body.get("jsonrpc") != "2.0" or "method" not in body:
            return {
                "jsonrpc": "2.0",
                "id": req_id,
                "error": {"code": -32600, "message": "invalid JSON-RPC 2.0 request"},
            }
        method = self.methods.get(body["method"])
        if method is None:
            return {
                "jsonrpc": "2.0",
                "id": req_id,
                "error": {"code": -32601, "message": f"method not found: {body['method']}"},
            }
        try:
            result = method(_params(body.get("params")))
        except RpcError as err:
            return {
                "jsonrpc": "2.0",
                "id": req_id,
                "error": {"code": err.code, "message": err.message},
            }
        except Exception as exc:  # a bug in the model must not kill the server
            log.exception("internal error in %s", body["method"])
            return {
                "jsonrpc": "2.0",
                "id": req_id,
                "error": {"code": -32603, "message": f"internal error: {exc}"},
            }
        return {"jsonrpc": "2.0", "id": req_id, "result": result}

    async def handle_rpc(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except Exception:
            return web.json_response(
                {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "parse error"}}
            )
        if isinstance(body, list):
            return web.json_response([self._dispatch(b) for b in body])
        return web.json_response(self._dispatch(body))

    async def handle_health(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "healthy", "latestLedger": self.chain.latest})

    async def handle_friendbot(self, request: web.Request) -> web.Response:
        try:
            self.chain.fund(request.query.get("addr", ""), FRIENDBOT_XLM, None, 0)
        except RpcError as err:
            return web.json_response({"status": 400, "detail": err.message}, status=400)
        return web.json_response({"successful": True, "ledger": self.chain.latest})

    async def _ledger_loop(self) -> None:
        while True:
            await asyncio.sleep(self.ledger_interval)
            self.chain.close_ledger()

    async def _lifecycle(self, _: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(self._ledger_loop())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def app(self) -> web.Application:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_post("/", self.handle_rpc)
        app.router.add_post("/rpc", self.handle_rpc)
        app.router.add_get("/health", self.handle_health)
        app.router.add_get("/friendbot", self.handle_friendbot)
        app.cleanup_ctx.append(self._lifecycle)
        return app
