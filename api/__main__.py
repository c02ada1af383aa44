"""`python -m api`: the API process. Logging is configured (JSON lines) and the metrics endpoint
and Temporal SDK runtime are started before uvicorn runs, so uvicorn's own lines are JSON too
(`log_config=None`: uvicorn leaves logging to us) and the request log is ours, with request
ids (`access_log=False`)."""

from __future__ import annotations

import uvicorn

from core.settings import get_settings
from core.telemetry.exporter import start_process_telemetry
from core.telemetry.logs import configure_logging


def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_level, "api")
    start_process_telemetry("api", host=settings.metrics_host, port=settings.api_metrics_port)
    uvicorn.run(
        "api.app:app",
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,
        access_log=False,
    )


if __name__ == "__main__":
    main()
