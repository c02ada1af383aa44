"""`python -m devnet.bootstrap --rpc-url URL [--liquidity UNITS] [--borrowers N] [--out FILE]`

Deploys one pool + creditline on a running devnet, seeds LP liquidity with a real deposit, funds
N demo borrowers (XLM for fees, tokens for guarantees, a passing reputation score), a vendor
(approved in the vendor registry) and `--channels` channel accounts for sponsored funding, and
prints the contract ids.
Devnet only: it uses the devnet's friendbot and deploy calls."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from chain.client import ChainClient
from core.money import format_stroops, to_stroops
from core.settings import get_settings
from devnet.kit import deploy_pool, new_funded_keypair, set_reputation, set_vendor

DEMO_REPUTATION = 100  # StepFi's top tier: credit limit 10 000 units


async def bootstrap(
    rpc_url: str,
    passphrase: str,
    *,
    liquidity: int,
    borrowers: int,
    borrower_tokens: int,
    channels: int = 0,
) -> dict[str, Any]:
    pool = await deploy_pool(rpc_url, passphrase, liquidity=liquidity)
    # Sponsored funding's channel accounts: funded by friendbot, like testnet's would be.
    channel_accounts = await asyncio.gather(*(new_funded_keypair(rpc_url) for _ in range(channels)))
    accounts = await asyncio.gather(
        *(
            new_funded_keypair(rpc_url, token_id=pool.token_id, token_amount=borrower_tokens)
            for _ in range(borrowers)
        )
    )
    vendor = await new_funded_keypair(rpc_url)
    # StepFi's create_loan refuses an unregistered vendor (#3) and a borrower scored below 50
    # (#4): the demo vendor is approved and every demo borrower gets a top score.
    await set_vendor(rpc_url, vendor.public_key, active=True)
    await asyncio.gather(
        *(set_reputation(rpc_url, k.public_key, DEMO_REPUTATION) for k in accounts)
    )
    client = ChainClient(rpc_url, passphrase)
    try:
        stats = await client.pool_stats(pool.pool_id)
    finally:
        await client.close()
    return {
        "rpc_url": rpc_url,
        "network_passphrase": passphrase,
        "pool_id": pool.pool_id,
        "creditline_id": pool.creditline_id,
        "token_id": pool.token_id,
        "admin": {"public": pool.admin_public, "secret": pool.admin_secret},
        "lp": {"public": pool.lp_public, "secret": pool.lp_secret},
        "borrowers": [{"public": k.public_key, "secret": k.secret} for k in accounts],
        "vendor": vendor.public_key,
        "vendor_secret": vendor.secret,
        "reputation": DEMO_REPUTATION,
        "channels": [{"public": k.public_key, "secret": k.secret} for k in channel_accounts],
        "pool_stats": stats.model_dump(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devnet.bootstrap", description=__doc__)
    parser.add_argument("--rpc-url", default=None, help="default: settings.rpc_url")
    parser.add_argument("--passphrase", default=None, help="default: settings.network_passphrase")
    parser.add_argument("--liquidity", default="1000000", help="LP liquidity in token units")
    parser.add_argument("--borrowers", type=int, default=3)
    parser.add_argument(
        "--borrower-tokens",
        default="100000",
        help="tokens (units) each borrower holds for guarantees",
    )
    parser.add_argument(
        "--channels", type=int, default=0, help="channel accounts to fund (sponsored funding)"
    )
    parser.add_argument("--out", type=Path, default=None, help="write the result as JSON here")
    args = parser.parse_args(argv)
    settings = get_settings()
    result = asyncio.run(
        bootstrap(
            args.rpc_url or settings.rpc_url,
            args.passphrase or settings.network_passphrase,
            liquidity=to_stroops(args.liquidity),
            borrowers=args.borrowers,
            borrower_tokens=to_stroops(args.borrower_tokens),
            channels=args.channels,
        )
    )
    units = format_stroops(int(result["pool_stats"]["total_liquidity"]))
    print(f"pool_id       {result['pool_id']}")
    print(f"creditline_id {result['creditline_id']}")
    print(f"token_id      {result['token_id']}")
    print(f"liquidity     {units} units at ledger {result['pool_stats']['ledger']}")
    print(f"borrowers     {len(result['borrowers'])}; vendor {result['vendor']}")
    if result["channels"]:
        print(f"channels      {len(result['channels'])} funded (CHANNEL_SECRETS)")
    print(f"POOLS='{json.dumps({result['pool_id']: result['creditline_id']})}'")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
