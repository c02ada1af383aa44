"""Each process's metrics endpoint and its Temporal SDK runtime.

One URL per process (API, worker, watcher) serves everything Prometheus needs from it:
- this process's prometheus-client registry (the families in core/telemetry/families.py and
  collectors a process registers, e.g. the API's pool gauges read from the ledger at scrape
  time);
- the Temporal SDK's own metrics (worker task slots, pollers, request latencies, and the custom
  metrics workflows and activities record through the SDK's metric meter). The SDK's Prometheus
  exporter (`Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(...)))`) serves on a
  bind address of its own; it is bound to a private loopback port and its families are
  re-exposed through the process's endpoint by `SdkMetricsBridge`, so an operator configures one
  scrape target per process.

The same Runtime forwards the SDK core's (Rust) log lines into Python logging, so they come out
as JSON lines like every other.
"""

from __future__ import annotations

import logging
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import REGISTRY, disable_created_metrics, start_http_server
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from temporalio.runtime import (
    LogForwardingConfig,
    LoggingConfig,
    PrometheusConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)

from core.net import free_port

log = logging.getLogger("telemetry")

# Buckets (seconds) of the histograms workflows and activities record through the SDK meter;
# the SDK's defaults are sized for milliseconds.
SDK_BUCKETS: dict[str, list[float]] = {
    "loan_open_duration_seconds": [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    "loan_settlement_duration_seconds": [0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300],
}
SCRAPE_TIMEOUT_S = 2.0

_runtime: Runtime | None = None


def temporal_runtime() -> Runtime | None:
    """The Runtime `start_process_telemetry` made for this process; None: the SDK default (e.g.
    in-process test servers)."""
    return _runtime


class SdkMetricsBridge(Collector):
    """Re-exposes the SDK exporter's families; if it does not answer, the scrape still serves
    this process's own families (and `temporal_sdk_metrics_up 0` says what is missing)."""

    def __init__(self, url: str) -> None:
        self._url = url

    def describe(self) -> list[Metric]:
        return []  # names are the SDK's; nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        up = Metric("temporal_sdk_metrics_up", "1 when the Temporal SDK exporter answered", "gauge")
        try:
            with urllib.request.urlopen(self._url, timeout=SCRAPE_TIMEOUT_S) as reply:
                text = reply.read().decode()
        except OSError as exc:
            log.warning("the Temporal SDK metrics exporter did not answer: %s", exc)
            up.add_sample("temporal_sdk_metrics_up", {}, 0)
            yield up
            return
        up.add_sample("temporal_sdk_metrics_up", {}, 1)
        yield up
        yield from text_string_to_metric_families(text)


@dataclass
class ProcessTelemetry:
    process: str
    url: str | None  # this process's metrics endpoint; None when disabled or not bound


def start_process_telemetry(
    process: str, *, host: str, port: int, collectors: Iterable[Collector] = ()
) -> ProcessTelemetry:
    """Call once at process start, before the Temporal client connects (it needs the Runtime).

    `port` 0 disables the endpoint (the Runtime still forwards the SDK's logs). A port already
    taken is logged as an error and the process runs on without metrics: its work matters more
    than its gauges, and the "no worker polling" alert notices a worker nobody can scrape."""
    global _runtime
    logging_config = LoggingConfig(
        filter=TelemetryFilter(core_level="WARN", other_level="WARN"),
        forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")),
    )
    if not port:
        _runtime = Runtime(telemetry=TelemetryConfig(logging=logging_config))
        return ProcessTelemetry(process, None)
    disable_created_metrics()  # no `_created` twin of every counter: Prometheus needs none
    sdk_port = free_port()
    _runtime = Runtime(
        telemetry=TelemetryConfig(
            logging=logging_config,
            metrics=PrometheusConfig(
                bind_address=f"127.0.0.1:{sdk_port}",
                counters_total_suffix=True,
                durations_as_seconds=True,
                histogram_bucket_overrides=SDK_BUCKETS,
            ),
            global_tags={"process": process},
        )
    )
    for collector in (SdkMetricsBridge(f"http://127.0.0.1:{sdk_port}/metrics"), *collectors):
        REGISTRY.register(collector)
    try:
        start_http_server(port, addr=host, registry=REGISTRY)
    except OSError as exc:
        log.error(
            "cannot serve metrics on %s:%d (%s); running without a metrics endpoint",
            host,
            port,
            exc,
        )
        return ProcessTelemetry(process, None)
    url = f"http://{host}:{port}/metrics"
    log.info("metrics at %s", url)
    return ProcessTelemetry(process, url)
