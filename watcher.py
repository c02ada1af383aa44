"""Settlement watcher (`python watcher.py`): follows the chain and signals the loan workflows
(settlement.watcher). One active per network: standbys wait on the lease in Redis. SIGTERM /
SIGINT finish the current pass and release the lease, so a standby takes over at once."""

from __future__ import annotations

import asyncio
import logging

from core.heap import freeze_startup_heap
from core.settings import get_settings
from core.telemetry.exporter import start_process_telemetry
from core.telemetry.logs import configure_logging
from runtime.clients import liquidity_history, open_clients, temporal_client, watcher_lease
from runtime.signals import stop_event
from settlement.watcher import SettlementWatcher

log = logging.getLogger("watcher")


async def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_level, "watcher")
    start_process_telemetry(
        "watcher", host=settings.metrics_host, port=settings.watcher_metrics_port
    )
    stop = stop_event()
    client = await temporal_client(settings)
    async with open_clients(settings) as clients:
        watcher = SettlementWatcher(
            settings=settings,
            client=client,
            chain=clients.chain,
            ledger=clients.ledger,
            tx_index=clients.tx_index,
            lease=watcher_lease(settings, clients.redis),
            history=liquidity_history(settings, clients.redis),
            history_interval=settings.history_interval_seconds,
        )
        log.info("watching %d pools", len(settings.pools))
        freeze_startup_heap()
        await watcher.run(stop)


if __name__ == "__main__":
    asyncio.run(main())
