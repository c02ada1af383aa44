"""`python -m devnet --port N [--host H] [--ledger-interval S] [--passphrase P]
[--retention-ledgers L] [--default-reputation N] [--vendors-active-by-default]`."""

from __future__ import annotations

import argparse
import logging

from aiohttp import web

from core.heap import freeze_startup_heap
from core.settings import get_settings
from core.telemetry.logs import configure_logging
from devnet.ledger import DEFAULT_RETENTION_LEDGERS, Chain
from devnet.rpc import DevnetServer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devnet", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--ledger-interval",
        type=float,
        default=5.0,
        help="seconds between ledger closes (tests use ~0.5)",
    )
    parser.add_argument(
        "--passphrase",
        default=None,
        help="network passphrase (default: settings.network_passphrase)",
    )
    parser.add_argument("--base-fee", type=int, default=100)
    parser.add_argument(
        "--retention-ledgers",
        type=int,
        default=DEFAULT_RETENTION_LEDGERS,
        help="ledgers of events and transaction results served, like Soroban RPC's "
        f"history retention window (default {DEFAULT_RETENTION_LEDGERS})",
    )
    parser.add_argument(
        "--default-reputation",
        type=int,
        default=0,
        help="score of a user nobody scored (StepFi: 0; a permissive devnet for tests: 100)",
    )
    parser.add_argument(
        "--vendors-active-by-default",
        action="store_true",
        help="treat unregistered vendors as active (StepFi: inactive)",
    )
    args = parser.parse_args(argv)
    configure_logging(get_settings().log_level, "devnet")
    passphrase = args.passphrase or get_settings().network_passphrase
    chain = Chain(
        passphrase,
        base_fee=args.base_fee,
        retention_ledgers=args.retention_ledgers,
        default_reputation=args.default_reputation,
        vendors_active_by_default=args.vendors_active_by_default,
    )
    server = DevnetServer(
        chain, ledger_interval=args.ledger_interval, public_url=f"http://{args.host}:{args.port}"
    )
    logging.getLogger("chain.devnet").info(
        "devnet: Soroban RPC on http://%s:%d/ passphrase=%r", args.host, args.port, passphrase
    )
    freeze_startup_heap()
    web.run_app(server.app(), host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
