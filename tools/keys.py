"""`python -m tools.keys create|list|revoke`: manage API keys from a shell, in the same Redis
store the API reads (REDIS_URL and LEDGER_PREFIX from the environment or .run/stack.env).

    python -m tools.keys create --name lending-backend --scopes loans:write,loans:read,pools:read
    python -m tools.keys list
    python -m tools.keys revoke 3f2a9c0d1b4e5f60

The key itself is printed once, by `create`; only its SHA-256 is stored. A revocation is seen by
every API process on its next request (keys are not cached)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence

from api.auth.keys import ApiKey, ApiKeyStore, UnknownScope
from api.auth.principal import SCOPES
from core.settings import Settings
from runtime.clients import redis_client


async def create_key(
    settings: Settings,
    name: str,
    scopes: Sequence[str],
    *,
    rate_per_minute: int | None = None,
    max_unsigned: int | None = None,
) -> tuple[ApiKey, str]:
    client = redis_client(settings)
    try:
        return await ApiKeyStore.of(settings, client).create(
            name, scopes, rate_per_minute=rate_per_minute, max_unsigned=max_unsigned
        )
    finally:
        await client.aclose()


def _when(ms: int | None) -> str:
    return "-" if ms is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000))


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "create":
        try:
            key, token = await create_key(
                settings,
                args.name,
                args.scopes.split(","),
                rate_per_minute=args.rate_per_minute,
                max_unsigned=args.max_unsigned,
            )
        except UnknownScope as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"id      {key.id}\nname    {key.name}\nscopes  {' '.join(key.scopes)}")
        print(f"key     {token}\n(shown once: store it now; send it as Authorization: Bearer)")
        return 0
    client = redis_client(settings)
    try:
        store = ApiKeyStore.of(settings, client)
        if args.command == "list":
            keys = await store.list()
            print(f"{'id':16}  {'created (UTC)':19}  {'revoked (UTC)':19}  scopes / name")
            for k in keys:
                print(
                    f"{k.id:16}  {_when(k.created_ms):19}  {_when(k.revoked_ms):19}  "
                    f"{' '.join(k.scopes)} / {k.name}"
                )
            return 0
        revoked = await store.revoke(args.key_id)
        if revoked is None:
            print(f"error: no API key {args.key_id!r}", file=sys.stderr)
            return 1
        print(f"revoked {revoked.id} ({revoked.name}) at {_when(revoked.revoked_ms)} UTC")
        return 0
    finally:
        await client.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.keys",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create", help="create a key and print it (once)")
    create.add_argument("--name", required=True)
    create.add_argument("--scopes", required=True, help=f"comma-separated: {','.join(SCOPES)}")
    create.add_argument(
        "--rate-per-minute",
        type=int,
        default=None,
        help="POST /v1/loans per minute for this key (default: the setting)",
    )
    create.add_argument(
        "--max-unsigned",
        type=int,
        default=None,
        help="open unsigned reservations for this key (default: the setting)",
    )
    sub.add_parser("list", help="every key (never a secret)")
    revoke = sub.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("key_id")
    return asyncio.run(_run(parser.parse_args(argv), Settings()))


if __name__ == "__main__":
    sys.exit(main())
