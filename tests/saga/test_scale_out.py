"""Nothing assumes one process: two `worker.py` processes poll one task queue, two API processes
(`uvicorn api.app:app`) serve the same loans, one watcher follows the chain. Under load one
worker is SIGKILLed by its PID: every loan still completes (its workflow tasks and activities move
to the surviving worker), every signed transaction lands, and no reservation leaks."""

from __future__ import annotations

import asyncio
import uuid

import httpx

from api.auth.keys import ApiKeyStore
from api.auth.principal import SCOPES
from chain.envelope import sign_envelope
from core.money import UNIT, format_stroops
from devnet.kit import wait_for_tx
from tests.api.conftest import ADMIN_TOKEN, JWT_SECRET, SEP10_KEYPAIR
from tests.api.helpers import DUE_DATE
from tests.saga.helpers import terms_for
from tests.saga.procs import Proc
from tests.saga.test_crash import Isolated, isolated  # noqa: F401  (fixture)
from tools.procs import free_port

LOANS = 16
FUNDED = 5 * UNIT


class ApiProc:
    """`uvicorn api.app:app` as a real subprocess on a free port, stopped by its PID."""

    def __init__(self, settings) -> None:
        self.port = free_port()
        argv = ["-m", "uvicorn", "api.app:app", "--host", "127.0.0.1", "--port", str(self.port)]
        self.proc = Proc("api", settings, argv=[*argv, "--log-level", "warning"])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def ready(self, within: float = 60) -> None:
        async with httpx.AsyncClient(timeout=5) as http:
            for _ in range(int(within * 5)):
                try:
                    if (await http.get(f"{self.url}/readyz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        raise AssertionError(f"API on {self.port} not ready:\n{self.proc.log()[-2000:]}")

    def stop(self) -> None:
        self.proc.stop()


def _body(pool, borrower, vendor) -> dict:
    terms = terms_for(borrower.public_key, vendor.public_key, FUNDED)
    return {
        "pool_id": pool.pool_id,
        "borrower": borrower.public_key,
        "vendor": vendor.public_key,
        "total_amount": format_stroops(terms.total_amount),
        "guarantee_amount": format_stroops(terms.guarantee_amount),
        "repayment_schedule": [
            {"amount": format_stroops(terms.total_amount), "due_date": DUE_DATE}
        ],
        "loan_type": 0,
        "ttl_seconds": 120,
    }


async def test_two_workers_two_apis_one_worker_killed_under_load(
    saga_stack,
    isolated: Isolated,  # noqa: F811
    new_borrower,
):
    stack, iso = saga_stack, isolated
    iso.settings.admin_token = ADMIN_TOKEN
    iso.settings.jwt_secret = JWT_SECRET
    iso.settings.sep10_signing_secret = SEP10_KEYPAIR.secret
    keys = ApiKeyStore(stack.redis, prefix=iso.settings.ledger_prefix)
    _, token = await keys.create(
        "scale-out", SCOPES, rate_per_minute=1_000_000, max_unsigned=1_000_000
    )
    auth = {"Authorization": f"Bearer {token}"}
    iso.spawn("watcher.py")
    workers = [iso.spawn("worker.py", WATCHER_ID=f"w{i}") for i in range(2)]
    apis = [ApiProc(iso.settings) for _ in range(2)]
    try:
        await asyncio.gather(*(api.ready() for api in apis))
        vendor = await new_borrower()
        borrowers = await asyncio.gather(*(new_borrower(iso.pool) for _ in range(LOANS)))
        passphrase = iso.settings.network_passphrase
        killed = asyncio.Event()

        async def one(i: int, borrower) -> str:
            api = apis[i % 2]  # the loans alternate between the two API processes
            async with httpx.AsyncClient(base_url=api.url, timeout=60) as http:
                await asyncio.sleep(i * 0.15)
                resp = await http.post(
                    "/v1/loans",
                    json=_body(iso.pool, borrower, vendor),
                    headers={**auth, "Idempotency-Key": f"scale-{uuid.uuid4()}"},
                )
                assert resp.status_code == 201, resp.text
                offer = resp.json()
                xdr = sign_envelope(offer["funding"]["xdr"], borrower.secret, passphrase)
                if i == LOANS // 3:
                    workers[0].kill()  # SIGKILL one worker mid-load
                    killed.set()
                # The other API relays the signed envelope.
                async with httpx.AsyncClient(base_url=apis[(i + 1) % 2].url, timeout=60) as other:
                    sub = await other.post(
                        f"/v1/loans/{offer['loan_id']}/submit",
                        json={"signed_xdr": xdr},
                        headers=auth,
                    )
                    assert sub.status_code == 202, sub.text
                return str(offer["loan_id"])

        loan_ids = await asyncio.gather(*(one(i, b) for i, b in enumerate(borrowers)))
        assert killed.is_set() and workers[0].proc.poll() is not None
        async with httpx.AsyncClient(base_url=apis[1].url, timeout=30) as http:
            for loan_id in loan_ids:
                for _ in range(300):
                    view = (await http.get(f"/v1/loans/{loan_id}", headers=auth)).json()
                    if view["state"] == "funded":
                        break
                    await asyncio.sleep(0.2)
                assert view["state"] == "funded", view
                landed = await wait_for_tx(stack.chain, view["funding"]["tx_hash"], 30)
                assert landed.status == "success", landed
        status = await iso.ledger.status(iso.pool.pool_id)
        assert (status.reserved, status.active_reservations) == (0, 0)  # nothing leaked
        stats = await stack.chain.pool_stats(iso.pool.pool_id)
        assert stats.locked_liquidity == LOANS * FUNDED
        commits = [
            e for e in await iso.ledger.audit(iso.pool.pool_id, count=1000) if e.action == "commit"
        ]
        assert sorted(e.loan_id or "" for e in commits) == sorted(loan_ids)  # once each
        assert workers[1].proc.poll() is None  # the survivor did the rest
    finally:
        for api in apis:
            api.stop()
