"""The liquidity dashboard in a real headless Chromium (Debian's, driven by Playwright with
executable_path; `make test` installs it): an operator signs in with the operator key, sees the
pool's figures equal GET /v1/pools/{id}/liquidity, sees a reservation appear when a loan opens
and leave when it funds, sees a blocked request with its shortage; a wrong key and a ledger
that is down show an error, not a blank page. Screenshots go to .run/screenshots/."""

from __future__ import annotations

import asyncio
import copy
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from playwright.async_api import async_playwright

from chain.envelope import sign_envelope
from core.money import UNIT
from devnet.kit import deploy_pool, new_funded_keypair
from tests.api.helpers import loan_body, wait_state
from tests.fixtures.redis import REDIS_URL
from tests.ops.stack import OpsStack, ops_stack
from tests.saga.procs import Proc
from tools.procs import free_port

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / ".run" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
FIGURES = {
    "total": "total",
    "locked": "locked",
    "reserved": "reserved",
    "available": "available",
    "pending": "pending_commits",
}


@pytest.fixture(scope="module")
async def stack(temporal_env: Any, devnet: Any) -> AsyncIterator[OpsStack]:
    redis = aioredis.from_url(REDIS_URL, decode_responses=True)
    pool = await deploy_pool(devnet.rpc_url, devnet.passphrase, liquidity=100 * UNIT)
    try:
        async with ops_stack(
            temporal_env, devnet, redis, pool, history_interval_seconds=1
        ) as running:
            yield running
    finally:
        await redis.aclose()


@pytest.fixture(scope="module")
def chromium() -> str:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium")
    SHOTS.mkdir(parents=True, exist_ok=True)
    return CHROMIUM


@pytest.fixture
async def page(chromium: str) -> AsyncIterator[Any]:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=chromium,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        context = await browser.new_context(viewport={"width": 1500, "height": 1100})
        # Offline: any request to another origin would be an asset fetched from elsewhere.
        foreign: list[str] = []
        context.on(
            "request",
            lambda r: foreign.append(r.url) if not r.url.startswith("http://127.0.0.1") else None,
        )
        tab = await context.new_page()
        errors: list[str] = []
        tab.on("pageerror", lambda e: errors.append(str(e)))
        yield tab
        assert not foreign, foreign
        assert not errors, errors
        await browser.close()


async def eventually(check: Callable[[], Awaitable[bool]], what: str, within: float = 20) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not seen on the dashboard within {within}s: {what}")
        await asyncio.sleep(0.25)


async def sign_in(page: Any, url: str, key: str) -> None:
    await page.goto(f"{url}/dashboard?refresh=1")
    await page.wait_for_selector("#login:not([hidden])")
    await page.fill("input[name=operator_key]", key)
    await page.click("#signin")


async def page_figures(page: Any, pool_id: str) -> dict[str, str]:
    section = page.locator(f'section[data-pool="{pool_id}"]')
    return {name: await section.locator(f'[data-figure="{name}"]').inner_text() for name in FIGURES}


async def api_figures(http: httpx.AsyncClient, pool_id: str) -> dict[str, str]:
    liq = (await http.get(f"/v1/pools/{pool_id}/liquidity")).json()
    return {name: liq[field] for name, field in FIGURES.items()}


async def test_wrong_key_shows_an_error_and_keeps_nothing(stack: OpsStack, page: Any) -> None:
    await sign_in(page, stack.api_url, "not-the-operator-key")
    error = page.locator("#error")
    await error.wait_for(state="visible")
    assert "refused" in (await error.inner_text())
    assert await page.locator("#login").is_visible()
    assert await page.locator("section.pool").count() == 0
    assert await page.evaluate("sessionStorage.getItem('operator_key')") is None
    await page.screenshot(path=str(SHOTS / "dashboard-wrong-key.png"), full_page=True)


async def test_operator_follows_a_loan_and_a_refusal(
    stack: OpsStack, page: Any, devnet: Any
) -> None:
    pool = stack.pool.pool_id
    key = stack.settings.admin_token
    await sign_in(page, stack.api_url, key)
    section = page.locator(f'section[data-pool="{pool}"]')
    await section.wait_for(state="visible")
    # The key lives in this tab's sessionStorage only, never in localStorage or a cookie.
    assert await page.evaluate("sessionStorage.getItem('operator_key')") == key
    assert await page.evaluate("localStorage.length") == 0
    assert (await page.context.cookies()) == []

    async with stack.http() as http:

        async def figures_match() -> bool:
            return await page_figures(page, pool) == await api_figures(http, pool)

        await eventually(figures_match, "the pool's figures as GET liquidity reports them")
        assert (await page_figures(page, pool))["total"] == "100"
        await page.screenshot(path=str(SHOTS / "dashboard-signed-in.png"), full_page=True)

        vendor = await new_funded_keypair(devnet.rpc_url)
        borrower = await new_funded_keypair(
            devnet.rpc_url, token_id=stack.pool.token_id, token_amount=1_000 * UNIT
        )
        opened = await http.post(
            "/v1/loans",
            json=loan_body(
                pool, borrower.public_key, vendor.public_key, total="50", guarantee="10"
            ),
            headers={"Idempotency-Key": f"dash-{uuid.uuid4()}"},
        )
        assert opened.status_code == 201, opened.text
        loan = opened.json()
        row = section.locator(f'tr[data-reservation="{loan["loan_id"]}"]')
        await row.wait_for(state="visible", timeout=20_000)
        cells = await row.locator("td").all_inner_texts()
        assert cells[0] == loan["loan_id"] and cells[2] == "40"
        assert cells[3].endswith("s") and cells[3] != "expired"  # "14 min 59 s"
        await eventually(figures_match, "the figures with the reservation")
        assert (await page_figures(page, pool))["reserved"] == "40"
        await page.screenshot(path=str(SHOTS / "dashboard-reserved.png"), full_page=True)

        signed = sign_envelope(
            loan["funding"]["xdr"], borrower.secret, stack.settings.network_passphrase
        )
        sent = await http.post(f"/v1/loans/{loan['loan_id']}/submit", json={"signed_xdr": signed})
        assert sent.status_code == 202, sent.text
        await wait_state(http, loan["loan_id"], {"funded"})
        await row.wait_for(state="detached", timeout=20_000)
        await eventually(figures_match, "the figures after funding")
        assert (await page_figures(page, pool))["locked"] == "40"

        other = await new_funded_keypair(
            devnet.rpc_url, token_id=stack.pool.token_id, token_amount=1_000 * UNIT
        )
        refused = await http.post(
            "/v1/loans",
            json=loan_body(pool, other.public_key, vendor.public_key, total="100", guarantee="20"),
            headers={"Idempotency-Key": f"dash-{uuid.uuid4()}"},
        )
        assert refused.status_code == 409, refused.text
        details = refused.json()["error"]["details"]
        blocked = section.locator(f'tr[data-blocked="{details["loan_id"]}"]')
        await blocked.wait_for(state="visible", timeout=20_000)
        assert (
            await blocked.locator('[data-field="shortage"]').inner_text()
            == details["shortage"]
            == "20"
        )
        assert "insufficient" in await blocked.inner_text()

    # The chart has the watcher's samples; the audit tail and reconciliation cards render.
    await eventually(lambda: _chart_points(page, pool), "history samples in the chart")
    audit = await section.inner_text()
    assert "reserve" in audit and "commit" in audit
    assert "Not reconciled yet." in audit
    await page.screenshot(path=str(SHOTS / "dashboard-blocked.png"), full_page=True)


async def _chart_points(page: Any, pool: str) -> bool:
    chart = page.locator(f'section[data-pool="{pool}"] [data-testid="chart"]')
    return (
        int(await chart.get_attribute("data-points") or 0) >= 2
        and await chart.locator('polyline[data-series="available"]').count() == 1
    )


async def test_a_ledger_that_is_down_shows_an_error_not_a_blank_page(
    stack: OpsStack, page: Any
) -> None:
    settings = copy.deepcopy(stack.settings)
    settings.redis_url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    settings.api_port = free_port()
    settings.api_metrics_port = 0
    api = Proc("api", settings, argv=["-m", "api"])
    url = f"http://127.0.0.1:{settings.api_port}"
    try:

        async def up() -> bool:
            try:
                async with httpx.AsyncClient(timeout=2) as http:
                    return (await http.get(f"{url}/healthz")).status_code == 200
            except httpx.HTTPError:
                return False

        await eventually(up, "the API without Redis answering /healthz", within=60)
        await sign_in(page, url, settings.admin_token)
        error = page.locator("#error")
        await error.wait_for(state="visible", timeout=20_000)
        text = await error.inner_text()
        assert "ledger_unavailable" in text and "Redis" in text
        assert not await page.locator("#login").is_visible()  # the key was fine
        await page.screenshot(path=str(SHOTS / "dashboard-ledger-down.png"), full_page=True)
    finally:
        api.stop()
