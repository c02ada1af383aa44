"""One place for configuration: every process reads the same env vars, so a value never differs
between the API, the worker and the watcher."""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".run/stack.env", extra="ignore")

    # Redis: the reservation ledger, audit streams, watcher cursor.
    redis_url: str = "redis://127.0.0.1:6379/0"
    ledger_prefix: str = "liq"
    # Scale-out (liquidity/connection.py): REDIS_URL names any node of a Redis Cluster, or the
    # sentinels name the primary of service REDIS_SENTINEL_SERVICE (REDIS_URL then gives db and
    # password only).
    redis_cluster: bool = False
    redis_sentinels: str = ""  # host:port,host:port,...
    redis_sentinel_service: str = ""
    # Ledger writes acknowledged by this many replicas (WAIT) before an activity returns; a
    # reservation not acknowledged in time is released and never offered.
    redis_min_replicas: int = 0
    redis_replica_timeout_ms: int = 1000
    # Bound of one Redis command (socket read, connect, waiting for a pooled connection).
    redis_timeout_seconds: float = 5.0

    # Temporal.
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    task_queue: str = "loans"
    # POST /v1/loans waits this long for the offer or refusal, then answers 503 (Retry-After):
    # a retry with the same Idempotency-Key gets the loan's outcome. The open steps of a loan
    # that only start after this deadline refuse (open_deadline_passed) instead of reserving.
    open_wait_seconds: float = 10.0
    # Loan reads (GET, and submit/cancel's own reads) come from the workflow's memo through
    # DescribeWorkflowExecution, which the server answers without a worker: bounded by this.
    loan_read_timeout_seconds: float = 2.0
    # ... unless a workflow task is pending (a signal not handled yet): then a query, which
    # waits for it, is tried for this long first, so a read after a cancel sees the cancel.
    loan_read_fresh_wait_seconds: float = 0.5
    # /readyz: a worker counts as polling the task queue if it polled within this. A healthy
    # idle worker re-polls when its long poll ends (the server holds it up to 60 s), so less
    # than ~70 s would call an idle worker missing.
    worker_poll_staleness_seconds: float = 75.0
    # Bound of the API's Temporal RPCs that answer from the server alone (query, signal,
    # describe); the open's update waits for the workflow and has its own bound.
    temporal_rpc_timeout_seconds: float = 5.0
    # The loan workflow's activity bounds (sent with each loan: core.models.SagaTimeouts): one
    # attempt of an open step, all attempts of one (then the open fails: 503 loan_open_failed),
    # one attempt of a commit / release (retried until it succeeds).
    open_step_timeout_seconds: float = 10.0
    open_budget_seconds: float = 30.0
    obligation_attempt_timeout_seconds: float = 15.0

    # Chain (Soroban RPC; the local devnet by default).
    rpc_url: str = "http://127.0.0.1:8000/rpc"
    network_passphrase: str = "Local Devnet ; liquidity-saga"
    # Pool contract id -> creditline contract id. The pool contract id is the API's pool_id.
    pools: dict[str, str] = Field(default_factory=dict)
    base_fee: int = 100
    # Bound of one Soroban RPC call (stellar-sdk's own default is ~33 s for a POST): under an
    # open step's attempt, and what `submit` makes its caller wait at most when the RPC stalls.
    rpc_timeout_seconds: float = 5.0

    # Funding (docs/funding.md): `source_account`, the borrower's own transaction signed by the
    # borrower; `sponsored`, the borrower signs only the create_loan authorization entry and a
    # channel account of CHANNEL_SECRETS is the transaction's source, fee payer and signer.
    funding_mode: Literal["source_account", "sponsored"] = "source_account"
    channel_secrets: str = ""  # comma-separated S... seeds of the channel accounts
    ledger_seconds: float = 5.0  # nominal ledger close interval (an entry's valid_until_ledger)
    channel_wait_seconds: float = 2.0  # how long a submit waits for a free channel, then 503

    # Reservation policy.
    reservation_ttl_seconds: int = 900
    settlement_grace_seconds: int = 30
    safety_buffer_stroops: int = 0

    # Credit policy (assess step).
    min_loan_stroops: int = 10_000_000  # 1 unit
    max_loan_stroops: int = 1_000_000_000_000_000  # 100M units
    min_guarantee_ratio_bps: int = 2_000  # StepFi's min_guarantee_percent: 20 % of total
    borrower_limit_stroops: int = 10_000_000_000_000  # 1M units of active reservations per pool

    # Settlement watcher: one active per network, the others stand by (lease in Redis).
    watcher_id: str = ""  # empty: <hostname>:<pid>
    watcher_lease_seconds: int = 5  # a crashed watcher's standby takes over within this

    # Open-loan journal (workflows/loan_journal.py): every grant is recorded in one of this many
    # journal workflows before the XDR leaves, so a restore after a Redis loss is exact. 0: off
    # (restore then relies on Temporal visibility alone, which lags).
    loan_journal_shards: int = 8

    # Reconciler.
    reconcile_interval_seconds: int = 60
    drift_freeze_threshold_stroops: int = 0
    # How far back the RPC keeps events (Soroban RPC: ledgerRetentionWindow, 120960 by default
    # today, about 7 days): a gap longer than this cannot be explained, what it hides is drift.
    reconcile_event_window_ledgers: int = 120_960
    # The worker creates/updates the Schedule at start; None -> "reconcile-<task_queue>".
    reconcile_schedule_id: str | None = None
    reconcile_schedule_enabled: bool = True

    # API.
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    # Where clients reach the API (stellar.toml's WEB_AUTH_ENDPOINT); empty: http://host:port.
    public_url: str = ""
    # Request bodies larger than this are refused with 413 before they are read whole (the
    # largest valid loan, 360 installments, is about 30 KB).
    max_request_body_bytes: int = 1_048_576

    # Authentication. The API refuses to start with an empty or default secret unless
    # dev_stack is set (api/auth/startup.py); `make run` generates every one of them.
    dev_stack: bool = False
    admin_token: str = ""  # the bootstrap operator credential (Authorization: Bearer <it>)
    jwt_secret: str = ""  # HS256 key of the SEP-10 session tokens
    jwt_ttl_seconds: int = 900
    sep10_signing_secret: str = ""  # Stellar secret seed (S...) that signs SEP-10 challenges
    sep10_home_domain: str = "localhost"
    sep10_challenge_ttl_seconds: int = 300
    wallet_opens_enabled: bool = True  # a borrower's token may open loans for its own account
    public_liquidity: bool = False  # GET /v1/pools/{id}/liquidity without credentials

    # Squatting: per API key and per borrower account, on POST /v1/loans.
    loan_rate_per_key_per_minute: int = 600
    loan_rate_per_borrower_per_minute: int = 10
    max_unsigned_per_key: int = 200
    max_unsigned_per_borrower: int = 3

    # Operating it: JSON logs at this level; each process serves Prometheus text on its own
    # port (0: none) at metrics_host, loopback unless an operator opens it up (containers).
    log_level: str = "INFO"
    metrics_host: str = "127.0.0.1"
    api_metrics_port: int = 9101
    worker_metrics_port: int = 9102
    watcher_metrics_port: int = 9103
    # The dashboard's chart: the active watcher samples every pool's figures this often and
    # keeps this much of them in Redis.
    history_interval_seconds: int = 10
    history_window_seconds: int = 3600

    @property
    def channel_secret_list(self) -> list[str]:
        return [s.strip() for s in self.channel_secrets.split(",") if s.strip()]

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """The settings a child process started with `env` reads (the inverse of `as_env`), for
        tools that prepare an environment before any process of the stack runs."""
        values: dict[str, Any] = {}
        for name, field in cls.model_fields.items():
            raw = env.get(name.upper())
            if raw is None:
                continue
            origin = getattr(field.annotation, "__origin__", None)
            values[name] = json.loads(raw) if origin in (dict, list) else raw
        return cls(_env_file=None, **values)

    def as_env(self) -> dict[str, str]:
        """Environment variables that make a child process (worker.py, watcher.py) read these
        very settings: one name per field, the same spelling pydantic-settings reads back."""
        env: dict[str, str] = {}
        for name, value in self.model_dump().items():
            if value is None:
                continue  # unset: the child derives the same default
            if isinstance(value, dict | list):
                env[name.upper()] = json.dumps(value)
            elif isinstance(value, bool):
                env[name.upper()] = str(value).lower()
            else:
                env[name.upper()] = str(value)
        return env


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
