"""The prometheus-client metric families of the API and the watcher, in one place so their
names and labels are written once (Grafana's dashboard and the alert rules refer to them; a test
checks those references against a live scrape).

Families recorded elsewhere:
- the loan saga's (`loan_open_duration_seconds`, `loans_finished_total`,
  `loan_settlement_duration_seconds`, `ledger_reserve_total`) go through the Temporal SDK's
  metric meter from the workflow and the reserve activity (worker endpoint);
- per pool gauges and the reconciler's (`pool_*`, `reconcile_*`) are read from the ledger and
  the last reconciliation report at scrape time (api/metrics.py, API endpoint).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# ---- API -------------------------------------------------------------------------------------
HTTP_REQUESTS = Counter(
    "http_requests", "HTTP requests answered, by route template", ["route", "method", "status"]
)
HTTP_DURATION = Histogram(
    "http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

# ---- watcher ---------------------------------------------------------------------------------
WATCHER_LAG = Gauge(
    "watcher_lag_ledgers", "Latest chain ledger minus the ledger the watcher has handled"
)
WATCHER_LEADER = Gauge("watcher_leader", "1 while this watcher holds the lease and works")
WATCHER_SETTLEMENTS = Counter(
    "watcher_settlements",
    "Settlements delivered to loans (settled, failed, late, unknown)",
    ["outcome"],
)
WATCHER_RPC_ERRORS = Counter("watcher_rpc_errors", "Watcher passes that failed on the RPC")
