"""What an operator sees after a scripted run against the real processes (API, worker, watcher
as subprocesses): loans funded, refused (short of liquidity, pool frozen) and expired, and a
reconciliation that finds drift. Each process's metrics endpoint is scraped and its values are
checked against the ledger and the reconciliation report; every log line parses as JSON and a
loan's lines are found by its loan_id; the Temporal UI's summary and details are read back
through the client; the Grafana dashboard and the alert rules refer only to exported names."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
import yaml

from chain.envelope import sign_envelope
from core.money import UNIT
from devnet.kit import deploy_pool, deposit, new_funded_keypair
from liquidity.ledger import Ledger
from tests.api.helpers import loan_body, stroops, wait_state
from tests.fixtures.redis import REDIS_URL
from tests.ops.stack import OpsStack, Samples, ops_stack
from workflows.loan_client import loan_handle

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "tools" / "compose"


@dataclass
class Run:
    stack: OpsStack
    ledger: Ledger
    loans: dict[str, str] = field(default_factory=dict)  # outcome -> loan id
    report: dict[str, Any] = field(default_factory=dict)
    liquidity: dict[str, Any] = field(default_factory=dict)
    scrapes: dict[str, Samples] = field(default_factory=dict)
    reserved_details: str = ""


async def _open(
    http: httpx.AsyncClient,
    pool_id: str,
    borrower: str,
    vendor: str,
    funded_units: int,
    **extra: Any,
) -> httpx.Response:
    total = Decimal(funded_units) * Decimal("1.25")  # a 20 % guarantee, the policy's minimum
    body = loan_body(
        pool_id,
        borrower,
        vendor,
        total=format(total.normalize(), "f"),
        guarantee=format((total - funded_units).normalize(), "f"),
        **extra,
    )
    return await http.post(
        "/v1/loans", json=body, headers={"Idempotency-Key": f"ops-{uuid.uuid4()}"}
    )


async def _current_details(client: Any, loan_id: str) -> str:
    metadata = await loan_handle(client, loan_id).query("__temporal_workflow_metadata")
    return str(metadata.current_details)


@pytest.fixture(scope="module")
async def run(temporal_env: Any, devnet: Any) -> AsyncIterator[Run]:
    redis = aioredis.from_url(REDIS_URL, decode_responses=True)
    pool = await deploy_pool(devnet.rpc_url, devnet.passphrase, liquidity=100 * UNIT)
    rpc, phrase = devnet.rpc_url, devnet.passphrase
    # A one-ledger event window: whatever changed the pool more than a ledger before a
    # reconciliation cannot be explained by events, so the second run below finds drift.
    async with ops_stack(
        temporal_env,
        devnet,
        redis,
        pool,
        reconcile_event_window_ledgers=1,
        history_interval_seconds=1,
    ) as stack:
        result = Run(stack, Ledger(redis, prefix=stack.settings.ledger_prefix))
        vendor = await new_funded_keypair(rpc)
        borrowers = [
            await new_funded_keypair(rpc, token_id=pool.token_id, token_amount=1_000 * UNIT)
            for _ in range(4)
        ]
        async with stack.http() as http:
            baseline = await http.post("/v1/admin/reconcile", json={})
            assert baseline.status_code == 200, baseline.text

            # funded: opened, signed, relayed, settled
            opened = await _open(http, pool.pool_id, borrowers[0].public_key, vendor.public_key, 40)
            assert opened.status_code == 201, opened.text
            funded = opened.json()
            result.loans["funded"] = funded["loan_id"]
            result.reserved_details = await _current_details(temporal_env.client, funded["loan_id"])
            signed = sign_envelope(funded["funding"]["xdr"], borrowers[0].secret, phrase)
            sent = await http.post(
                f"/v1/loans/{funded['loan_id']}/submit", json={"signed_xdr": signed}
            )
            assert sent.status_code == 202, sent.text
            await wait_state(http, funded["loan_id"], {"funded"})

            # refused: more than the pool has
            refused = await _open(
                http, pool.pool_id, borrowers[1].public_key, vendor.public_key, 90
            )
            assert refused.status_code == 409, refused.text
            result.loans["refused"] = refused.json()["error"]["details"]["loan_id"]

            # expired: a five-second reservation nobody signs
            short = await _open(
                http, pool.pool_id, borrowers[2].public_key, vendor.public_key, 10, ttl_seconds=5
            )
            assert short.status_code == 201, short.text
            result.loans["expired"] = short.json()["loan_id"]
            await wait_state(http, result.loans["expired"], {"expired"}, within=60)

            # drift: LP liquidity deposited on chain, older than the event window by the run
            lp = await new_funded_keypair(rpc, token_id=pool.token_id, token_amount=7 * UNIT)
            assert (
                await deposit(rpc, phrase, pool.pool_id, lp.secret, 7 * UNIT)
            ).status == "success"
            await asyncio.sleep(2.5)
            reconciled = await http.post("/v1/admin/reconcile", json={})
            assert reconciled.status_code == 200, reconciled.text
            report = (await http.get(f"/v1/pools/{pool.pool_id}/reconciliation")).json()
            result.report = report
            assert report["froze"], report  # drift above the threshold (0) froze the pool

            # refused again: the pool is frozen
            frozen = await _open(http, pool.pool_id, borrowers[3].public_key, vendor.public_key, 5)
            assert frozen.status_code == 423, frozen.text
            result.loans["frozen"] = frozen.json()["error"]["details"]["loan_id"]

            await asyncio.sleep(1.5)  # the watcher's next pass (lag, leader) and history sample
            result.liquidity = (await http.get(f"/v1/pools/{pool.pool_id}/liquidity")).json()
            for name in ("api", "worker", "watcher"):
                result.scrapes[name] = await stack.scrape(name)
        yield result
    await redis.aclose()


# ---- metrics -------------------------------------------------------------------------------


async def test_api_exports_requests_pool_figures_and_drift(run: Run) -> None:
    api = run.scrapes["api"]
    pool = run.stack.pool.pool_id
    loans = "/v1/loans"
    assert api.value("http_requests_total", route=loans, method="POST", status="201") == 2
    assert api.value("http_requests_total", route=loans, method="POST", status="409") == 1
    assert api.value("http_requests_total", route=loans, method="POST", status="423") == 1
    assert api.value("http_request_duration_seconds_count", route=loans, method="POST") == 4
    assert api.value("http_requests_total", route="/v1/loans/{loan_id}/submit", status="202") == 1
    assert api.families["http_request_duration_seconds"] == "histogram"

    # Pool figures equal the ledger's, as GET /v1/pools/{id}/liquidity reports them.
    liq = run.liquidity
    status = await run.ledger.status(pool)
    figures = {
        "total": status.total,
        "locked": status.locked,
        "reserved": status.reserved,
        "available": status.available,
        "pending": status.pending_commits,
    }
    for figure, value in figures.items():
        assert api.value("pool_liquidity_stroops", pool=pool, figure=figure) == value, figure
    assert (
        figures["total"] == stroops(liq["total"])
        and figures["locked"] == stroops(liq["locked"])
        and figures["available"] == stroops(liq["available"])
    )
    assert figures["locked"] == 40 * UNIT  # the funded loan
    assert api.value("pool_active_reservations", pool=pool) == liq["active_reservations"] == 0
    assert api.value("pool_frozen", pool=pool) == 1 and liq["frozen"] is True

    # Drift by class equals the last report's unexplained changes.
    exp = run.report["explanation"]
    drift_locked = stroops(exp["unexplained_locked"])
    drift_total = stroops(exp["unexplained_total"])
    assert (drift_locked, drift_total) == (40 * UNIT, 7 * UNIT)  # the loan, the deposit
    assert api.value("reconcile_drift_stroops", pool=pool, **{"class": "locked"}) == drift_locked
    assert api.value("reconcile_drift_stroops", pool=pool, **{"class": "total"}) == drift_total
    assert api.value("reconcile_last_success_timestamp_seconds", pool=pool) == pytest.approx(
        run.report["at_ms"] / 1000
    )
    # The API's Temporal client reports through the SDK runtime too.
    assert api.value("temporal_sdk_metrics_up") == 1
    assert api.has("temporal_request_total")


async def test_worker_exports_loan_and_ledger_metrics_through_the_sdk_meter(run: Run) -> None:
    worker = run.scrapes["worker"]
    pool = run.stack.pool.pool_id
    audit = await run.ledger.audit(pool, count=1000)
    blocked = await run.ledger.blocked(pool, count=1000)
    reserves = [e for e in audit if e.action == "reserve"]
    assert worker.value("ledger_reserve_total", pool=pool, outcome="reserved") == len(reserves) == 2
    assert worker.value("ledger_reserve_total", pool=pool, outcome="insufficient") == 1
    assert worker.value("ledger_reserve_total", pool=pool, outcome="frozen") == 1
    refused = sum(
        v
        for n, lab, v in worker.rows
        if n == "ledger_reserve_total"
        and lab.get("pool") == pool
        and lab["outcome"] not in ("reserved", "replayed")
    )
    assert refused == len(blocked) == 2

    assert worker.value("loans_finished_total", state="funded") == 1
    assert worker.value("loans_finished_total", state="expired") == 1
    assert worker.value("loans_finished_total", state="refused") == 2
    assert worker.families["loan_open_duration_seconds"] == "histogram"
    assert worker.value("loan_open_duration_seconds_count", outcome="offered") == 2
    assert worker.value("loan_open_duration_seconds_count", outcome="insufficient_liquidity") == 1
    assert worker.value("loan_open_duration_seconds_count", outcome="pool_frozen") == 1
    assert worker.value("loan_settlement_duration_seconds_count") == 1
    assert worker.value("loan_settlement_duration_seconds_sum") > 0
    # the SDK's own worker metrics
    assert worker.value("temporal_num_pollers", poller_type="workflow_task") >= 1
    assert worker.value("temporal_workflow_completed_total", workflow_type="LoanWorkflow") >= 4


async def test_watcher_exports_leadership_lag_and_settlements(run: Run) -> None:
    watcher = run.scrapes["watcher"]
    assert watcher.value("watcher_leader") == 1
    assert watcher.value("watcher_settlements_total", outcome="settled") == 1
    assert watcher.value("watcher_settlements_total", outcome="failed") == 0
    assert watcher.value("watcher_rpc_errors_total") == 0
    assert 0 <= watcher.value("watcher_lag_ledgers") <= 5
    assert watcher.families["watcher_lag_ledgers"] == "gauge"


async def test_the_watcher_samples_the_dashboard_history(run: Run) -> None:
    from liquidity.history import LiquidityHistory

    history = LiquidityHistory(run.ledger._redis, prefix=run.stack.settings.ledger_prefix)
    points = await history.points(run.stack.pool.pool_id)
    assert len(points) >= 5  # one a second over the run
    assert any(p.reserved > 0 for p in points)  # the open loans were seen
    assert points[-1].frozen and points[-1].locked == 40 * UNIT
    assert [p.at_ms for p in points] == sorted(p.at_ms for p in points)


# ---- logs ----------------------------------------------------------------------------------


def _lines(run: Run, process: str) -> list[dict[str, Any]]:
    text = run.stack.logs(process)
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines, f"{process} logged nothing"
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"{process} wrote a line that is not JSON: {line[:300]!r}")
    return parsed


async def test_every_log_line_is_json_and_a_loan_is_found_by_its_id(run: Run) -> None:
    logs = {p: _lines(run, p) for p in ("api", "worker", "watcher")}
    for process, lines in logs.items():
        for line in lines:
            assert {"time", "level", "logger", "message"} <= set(line), (process, line)
            assert line["process"] == process
            assert line["level"] in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}

    funded = run.loans["funded"]
    api = [line for line in logs["api"] if line.get("loan_id") == funded]
    assert {line["route"] for line in api} >= {"/v1/loans", "/v1/loans/{loan_id}/submit"}
    assert all(line["request_id"] and line["pool_id"] == run.stack.pool.pool_id for line in api)
    worker = [line for line in logs["worker"] if line.get("loan_id") == funded]
    states = [line.get("state") for line in worker]
    assert states[:1] == ["assessing"] and "funded" in states, states
    assert all(line["workflow_id"] == f"loan-{funded}" for line in worker)
    assert any(line.get("tx_hash") for line in worker)
    watcher = [line for line in logs["watcher"] if line.get("loan_id") == funded]
    assert watcher and all(line["tx_hash"] and line["pool_id"] for line in watcher)
    expired = [
        line.get("state") for line in logs["worker"] if line.get("loan_id") == run.loans["expired"]
    ]
    assert "expired" in expired
    # No field is ever null: absent or set.
    for lines in logs.values():
        for line in lines:
            for name in ("loan_id", "pool_id", "tx_hash", "workflow_id", "request_id"):
                assert line.get(name, "x") not in (None, ""), line


# ---- the Temporal UI -----------------------------------------------------------------------


async def test_loan_workflows_carry_summary_and_details(run: Run, temporal_env: Any) -> None:
    client = temporal_env.client
    desc = await loan_handle(client, run.loans["funded"]).describe()
    summary = await desc.static_summary()
    details = await desc.static_details()
    pool = run.stack.pool.pool_id
    assert summary is not None and summary.startswith("Loan 40 units from pool ")
    assert pool[:5] in summary and "stroops" not in summary and "400000000" not in summary
    assert details is not None and pool in details and "total 50 units" in details
    assert "guarantee 10" in details
    # current details follow the state: set while reserved, then funded
    assert run.reserved_details.startswith("**reserved**"), run.reserved_details
    assert "reserved 40 units" in run.reserved_details
    assert (await _current_details(client, run.loans["funded"])).startswith("**funded**")
    assert (await _current_details(client, run.loans["expired"])).startswith("**expired**")
    refused = await _current_details(client, run.loans["refused"])
    assert refused.startswith("**refused**") and "insufficient_liquidity" in refused


# ---- Grafana and Prometheus files ----------------------------------------------------------

PROMQL_WORDS = {
    "sum",
    "by",
    "rate",
    "increase",
    "irate",
    "max",
    "min",
    "avg",
    "count",
    "absent",
    "or",
    "and",
    "unless",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "without",
    "histogram_quantile",
    "time",
    "offset",
    "bool",
    "le",
    "vector",
    "clamp_min",
    "clamp_max",
    "abs",
    "delta",
    "max_over_time",
    "min_over_time",
    "avg_over_time",
    "last_over_time",
    "topk",
    "bottomk",
    "label_replace",
    "changes",
    "resets",
    "deriv",
    "sort",
    "sort_desc",
    "inf",
    "nan",
    "scalar",
}


def _metric_names(expr: str) -> set[str]:
    """Metric names an expression selects: identifiers that are not functions, keywords, label
    names inside {...} / by (...), or durations."""
    stripped = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    stripped = re.sub(
        r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", stripped
    )
    stripped = re.sub(r"\[[^\]]*\]", "", stripped)  # ranges
    stripped = re.sub(r'"[^"]*"', "", stripped)
    names = set(re.findall(r"(?<![\w.])[a-zA-Z_:][a-zA-Z0-9_:]*", stripped))
    return {n for n in names if n not in PROMQL_WORDS and not re.fullmatch(r"\d+[smhd]", n)}


def _dashboard_exprs() -> list[str]:
    board = json.loads((COMPOSE_DIR / "grafana" / "dashboards" / "liquidity.json").read_text())
    exprs = [t["expr"] for panel in board["panels"] for t in panel.get("targets", [])]
    assert len(exprs) >= 8
    return exprs


def _alert_rules() -> list[dict[str, Any]]:
    rules = yaml.safe_load((COMPOSE_DIR / "prometheus" / "alerts.yml").read_text())
    return [rule for group in rules["groups"] for rule in group["rules"]]


async def test_dashboard_and_alert_rules_reference_only_exported_metrics(run: Run) -> None:
    exported = set().union(*(s.names() for s in run.scrapes.values()))
    exprs = _dashboard_exprs() + [rule["expr"] for rule in _alert_rules()]
    referenced = set().union(*(_metric_names(e) for e in exprs))
    assert referenced, exprs
    missing = referenced - exported
    assert not missing, f"not exported by any process: {sorted(missing)}"
    # the figures the dashboard and the alerts are about
    assert {
        "pool_liquidity_stroops",
        "pool_frozen",
        "reconcile_drift_stroops",
        "watcher_lag_ledgers",
        "temporal_num_pollers",
        "ledger_reserve_total",
    } <= referenced


def test_alert_rules_cover_what_operators_must_hear_about() -> None:
    rules = {rule["alert"]: rule for rule in _alert_rules()}
    assert {
        "PoolFrozen",
        "ReconcilerDrift",
        "WatcherLagging",
        "NoWorkerPolling",
        "ReservationsRefusedUnknownPool",
    } <= set(rules)
    assert "pool_frozen" in rules["PoolFrozen"]["expr"]
    assert "reconcile_drift_stroops" in rules["ReconcilerDrift"]["expr"]
    assert re.search(r"watcher_lag_ledgers\)?\s*>\s*\d+", rules["WatcherLagging"]["expr"])
    assert "temporal_num_pollers" in rules["NoWorkerPolling"]["expr"]
    assert 'outcome="unknown_pool"' in rules["ReservationsRefusedUnknownPool"]["expr"]
    for rule in rules.values():
        assert rule["labels"]["severity"] in {"page", "ticket"}
        assert rule["annotations"]["summary"]
