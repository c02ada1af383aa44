"""`make demo`: a scripted story against the running stack (`make run`), over the HTTP API only.

The platform (the lending backend) opens loans with PLATFORM_API_KEY; each borrower's wallet
signs in with SEP-10 (challenge, sign, token) and submits or cancels its own loan with that
token; the operator's key reads the blocked stream. Both kinds of credential, side by side.

0. a stranger without credentials is refused (401);
1. a loan nobody will sign, with a 20 s reservation (it will expire);
2. a burst of concurrent requests for more than the pool has left: some are reserved, the rest
   are refused with their shortage, and none over-commits the pool;
3. an idempotent replay, and a tampered envelope refused;
4. two borrowers sign in (SEP-10) and sign their loans (with the demo secrets in
   .run/chain.json: the wallet's job) and the API relays their transactions; another borrower's
   token may not cancel a loan (403); its own borrower cancels it; the short one expires;
4b. in sponsored mode (FUNDING_MODE=sponsored make run): one borrower's two loans both fund,
   each borrower signing only its authorization entry, and a foreign-signed entry is refused;
5. a refused request retried once the released funds are back;
6. a table of outcomes and the pool's figures before and after."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from stellar_sdk import Keypair, TransactionEnvelope
from stellar_sdk.auth import authorize_entry
from stellar_sdk.sep.stellar_web_authentication import read_challenge_transaction

from chain.envelope import sign_envelope
from core.money import format_stroops, to_stroops
from tools.stack import read_env

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / ".run"
SHORT_TTL = 20
BURST = 5


def say(msg: str = "") -> None:
    print(msg, flush=True)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Demo:
    """`http` is the platform backend (it sends the platform's key); `wallet` is the borrowers'
    wallets (no key: each request carries its borrower's SEP-10 token)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        wallet: httpx.AsyncClient,
        env: dict[str, str],
        chain: dict[str, Any],
    ):
        self.http = http
        self.wallet = wallet
        self.operator = bearer(env["OPERATOR_API_KEY"])
        self.home_domain = env.get("SEP10_HOME_DOMAIN", "localhost")
        self.tokens: dict[str, str] = {}
        self.passphrase = env["NETWORK_PASSPHRASE"]
        self.pool_id: str = chain["pool_id"]
        self.borrowers: list[dict[str, str]] = chain["borrowers"]
        self.vendor: str = chain["vendor"]
        self.rows: list[dict[str, Any]] = []
        self._serial = 0

    def _due_date(self) -> int:
        """A distinct due date per request keeps every funding transaction distinct even when
        one borrower asks twice with the same terms in the same second."""
        self._serial += 1
        return int(time.time()) + 30 * 86400 + self._serial

    def body(self, borrower: str, funded: int, ttl: int | None = None) -> dict[str, Any]:
        guarantee = funded // 4  # 20 % of the total: StepFi's minimum guarantee
        total = funded + guarantee
        body: dict[str, Any] = {
            "pool_id": self.pool_id,
            "borrower": borrower,
            "vendor": self.vendor,
            "total_amount": format_stroops(total),
            "guarantee_amount": format_stroops(guarantee),
            "repayment_schedule": [{"amount": format_stroops(total), "due_date": self._due_date()}],
            "loan_type": 0,
        }
        if ttl is not None:
            body["ttl_seconds"] = ttl
        return body

    async def liquidity(self) -> dict[str, Any]:
        resp = await self.http.get(f"/v1/pools/{self.pool_id}/liquidity")
        resp.raise_for_status()
        figures: dict[str, Any] = resp.json()
        return figures

    async def request(
        self,
        label: str,
        borrower: dict[str, str],
        funded: int,
        ttl: int | None = None,
        key: str | None = None,
    ) -> dict[str, Any]:
        key = key or f"demo-{uuid.uuid4()}"
        body = self.body(borrower["public"], funded, ttl)
        resp = await self.http.post("/v1/loans", json=body, headers={"Idempotency-Key": key})
        row = {
            "label": label,
            "key": key,
            "body": body,
            "borrower": borrower,
            "status": resp.status_code,
            "reply": resp.json(),
            "funded": funded,
            "replayed": resp.headers.get("Idempotent-Replayed") == "true",
        }
        self.rows.append(row)
        return row

    @staticmethod
    def describe(row: dict[str, Any]) -> str:
        reply = row["reply"]
        if row["status"] == 201:
            expires = time.localtime(reply["funding"]["expires_at"])
            return (
                f"201 reserved {reply['reserved_amount']:>8}  loan {reply['loan_id'][:8]}  "
                f"expires {time.strftime('%H:%M:%S', expires)}"
            )
        err = reply["error"]
        d = err["details"]
        if err["code"] == "insufficient_liquidity":
            return (
                f"{row['status']} {err['code']}: required {d['required']}, "
                f"available {d['available']}, shortage {d['shortage']}"
            )
        return f"{row['status']} {err['code']}: {err['message']}"

    async def wallet_token(self, borrower: dict[str, str]) -> str:
        """SEP-10 as a wallet does it: fetch stellar.toml, get a challenge, check it is the
        server's, sign it with the account's key, exchange it for a session token."""
        if borrower["public"] in self.tokens:
            return self.tokens[borrower["public"]]
        toml = (await self.wallet.get("/.well-known/stellar.toml")).text
        fields = dict(line.split("=", 1) for line in toml.splitlines() if "=" in line)
        signing_key = fields["SIGNING_KEY"].strip().strip('"')
        endpoint = fields["WEB_AUTH_ENDPOINT"].strip().strip('"')
        challenge = (
            await self.wallet.get("/v1/auth", params={"account": borrower["public"]})
        ).json()["transaction"]
        read_challenge_transaction(
            challenge,
            signing_key,
            self.home_domain,
            endpoint.split("://", 1)[1].split("/", 1)[0],
            self.passphrase,
        )
        envelope = TransactionEnvelope.from_xdr(challenge, self.passphrase)
        envelope.sign(Keypair.from_secret(borrower["secret"]))
        resp = await self.wallet.post("/v1/auth", json={"transaction": envelope.to_xdr()})
        resp.raise_for_status()
        self.tokens[borrower["public"]] = token = str(resp.json()["token"])
        return token

    def signed_body(self, row: dict[str, Any], secret: str | None = None) -> dict[str, str]:
        """What the wallet signs, by the offer's funding mode: the transaction envelope, or
        (sponsored) only the create_loan authorization entry, with stellar-sdk's helper."""
        funding = row["reply"]["funding"]
        secret = secret or row["borrower"]["secret"]
        if funding.get("mode") == "sponsored":
            entry = authorize_entry(
                funding["auth_entry"],
                Keypair.from_secret(secret),
                funding["valid_until_ledger"],
                self.passphrase,
            )
            return {"signed_auth_entry": entry.to_xdr()}
        signed = sign_envelope(
            funding["xdr"], secret, self.passphrase, expected_hash=funding["tx_hash"]
        )
        return {"signed_xdr": signed}

    async def submit(self, row: dict[str, Any]) -> httpx.Response:
        token = await self.wallet_token(row["borrower"])
        for _ in range(30):  # sponsored: 503 channels_busy while every channel is in flight
            resp = await self.wallet.post(
                f"/v1/loans/{row['reply']['loan_id']}/submit",
                json=self.signed_body(row),
                headers=bearer(token),
            )
            if resp.status_code != 503:
                break
            await asyncio.sleep(float(resp.headers.get("Retry-After", "1")))
        what = "its authorization entry" if "signed_auth_entry" in self.signed_body(row) else ""
        say(
            f"  {row['label']}: the borrower signed in (SEP-10), signed {what or 'the XDR'} and "
            f"submitted with its token -> {resp.status_code} "
            f"{resp.json().get('state', resp.json())}"
        )
        return resp

    async def state(self, loan_id: str) -> dict[str, Any]:
        view: dict[str, Any] = (await self.http.get(f"/v1/loans/{loan_id}")).json()
        return view

    async def wait_all(self, wanted: dict[str, set[str]], limit_s: float) -> dict[str, str]:
        deadline = time.monotonic() + limit_s
        states: dict[str, str] = {}
        while True:
            for loan_id in wanted:
                states[loan_id] = (await self.state(loan_id))["state"]
            if all(states[i] in s for i, s in wanted.items()) or time.monotonic() > deadline:
                return states
            await asyncio.sleep(1)


async def sponsored_story(demo: Demo) -> dict[str, set[str]]:
    """FUNDING_MODE=sponsored: one borrower holds two open loans at once and both fund (no
    sequence of theirs is used: a channel account is each transaction's source and fee payer);
    an entry signed by someone else is refused and its reservation released."""
    b = demo.borrowers
    say(
        "\n4b) Sponsored funding: the borrower signs only the authorization entry; a channel "
        "account pays the fee and owns the sequence:"
    )
    unit = 10_000_000
    pair = await asyncio.gather(
        demo.request("S1 (same borrower)", b[0], unit),
        demo.request("S2 (same borrower)", b[0], unit),
    )
    wanted: dict[str, set[str]] = {}
    for row in pair:
        if row["status"] == 201:
            await demo.submit(row)
            wanted[row["reply"]["loan_id"]] = {"funded", "failed"}
        else:
            say(f"  {row['label']}: {demo.describe(row)}")
    foreign = await demo.request("S3 (foreign-signed)", b[1], unit)
    if foreign["status"] == 201:
        resp = await demo.http.post(
            f"/v1/loans/{foreign['reply']['loan_id']}/submit",
            json=demo.signed_body(foreign, secret=Keypair.random().secret),
        )
        err = resp.json()["error"]
        say(
            f"  S3: an entry signed by someone else -> {resp.status_code} {err['code']} "
            f"({err['details'].get('reason')}), reservation released"
        )
        wanted[foreign["reply"]["loan_id"]] = {"cancelled"}
    return wanted


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "-" * len(line)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


async def story(demo: Demo) -> int:
    before = await demo.liquidity()
    available = to_stroops(before["available"], allow_zero=True)
    say(
        f"Pool {demo.pool_id}\n  before: available {before['available']}, reserved "
        f"{before['reserved']}, locked {before['locked']}"
    )
    listing = await demo.wallet.get(f"/v1/pools/{demo.pool_id}/reservations")
    say(
        f"\n0) A stranger with no credential lists the pool's reservations: {listing.status_code} "
        f"{listing.json()['error']['code']}"
    )
    if available < 10 * 10_000_000:
        say("The pool has less than 10 units available; restart `make run` for a fresh pool.")
        return 1
    funded = available // 4
    b = demo.borrowers

    say(
        f"\n1) A loan nobody will sign: {format_stroops(funded)} funded, reservation of "
        f"{SHORT_TTL} s"
    )
    lonely = await demo.request("L1 (left to expire)", b[0], funded, ttl=SHORT_TTL)
    say(f"  {demo.describe(lonely)}")

    say(
        f"\n2) {BURST} concurrent requests of {format_stroops(funded)} each; room for "
        f"{(available - funded) // funded}:"
    )
    burst = await asyncio.gather(
        *[demo.request(f"B{i + 1}", b[(i + 1) % len(b)], funded) for i in range(BURST)]
    )
    for row in burst:
        say(f"  {row['label']}: {demo.describe(row)}")
    mid = await demo.liquidity()
    say(
        f"  pool now: reserved {mid['reserved']}, available {mid['available']} "
        "(never negative: the ledger reserves atomically)"
    )

    granted = [r for r in burst if r["status"] == 201]
    refused = [r for r in burst if r["status"] != 201]
    if len(granted) < 3:
        say("Fewer than 3 loans were reserved; is the worker running? See .run/logs/.")
        return 1

    say("\n3) The same request again with the same Idempotency-Key:")
    again = await demo.http.post(
        "/v1/loans", json=granted[0]["body"], headers={"Idempotency-Key": granted[0]["key"]}
    )
    say(
        f"  {again.status_code}, Idempotent-Replayed: {again.headers.get('Idempotent-Replayed')}"
        f", same loan: {again.json().get('loan_id') == granted[0]['reply']['loan_id']}"
    )
    sponsored = granted[0]["reply"]["funding"].get("mode") == "sponsored"
    if not sponsored:  # (sponsored: a refused entry releases the loan, shown in 4b)
        tampered = sign_envelope(
            granted[0]["reply"]["funding"]["xdr"],
            b[1]["secret"] if granted[0]["borrower"] is b[0] else b[0]["secret"],
            demo.passphrase,
        )
        resp = await demo.http.post(
            f"/v1/loans/{granted[0]['reply']['loan_id']}/submit", json={"signed_xdr": tampered}
        )
        say(
            f"  an envelope signed by someone else: {resp.status_code} "
            f"{resp.json()['error']['code']} ({resp.json()['error']['details'].get('reason')})"
        )

    say("\n4) Two borrowers sign and submit; one cancels:")
    # A Stellar account has one sequence number: two open loans of one borrower were built on
    # the same one, so only one of them could land. Submit loans of two different borrowers.
    first = granted[0]
    second = next((r for r in granted[1:] if r["borrower"] is not first["borrower"]), granted[1])
    cancel = next(r for r in granted if r is not first and r is not second)
    await demo.submit(first)
    await demo.submit(second)
    cancel_url = f"/v1/loans/{cancel['reply']['loan_id']}/cancel"
    intruder = (
        first["borrower"] if first["borrower"] is not cancel["borrower"] else (second["borrower"])
    )
    resp = await demo.wallet.post(
        cancel_url, json={"reason": "not mine"}, headers=bearer(await demo.wallet_token(intruder))
    )
    say(
        f"  {cancel['label']}: another borrower's token tries to cancel it -> {resp.status_code} "
        f"{resp.json()['error']['code']}"
    )
    resp = await demo.wallet.post(
        cancel_url,
        json={"reason": "borrower changed their mind"},
        headers=bearer(await demo.wallet_token(cancel["borrower"])),
    )
    say(f"  {cancel['label']}: its borrower cancels it with its own token -> {resp.status_code}")

    extra: dict[str, set[str]] = {}
    if sponsored:
        extra = await sponsored_story(demo)
    wanted = {
        **extra,
        first["reply"]["loan_id"]: {"funded", "failed"},
        second["reply"]["loan_id"]: {"funded", "failed"},
        cancel["reply"]["loan_id"]: {"cancelled"},
    }
    if lonely["status"] == 201:
        wanted[lonely["reply"]["loan_id"]] = {"expired"}
    say(
        f"\n   waiting for settlement on chain and for L1's reservation to expire "
        f"(~{SHORT_TTL} s + a grace of a few ledgers) ..."
    )
    await demo.wait_all(wanted, limit_s=SHORT_TTL + 60)

    if refused:
        say("\n5) A refused request, retried now that released funds are back:")
        retry = await demo.request(
            f"{refused[0]['label']} retry", refused[0]["borrower"], refused[0]["funded"]
        )
        say(f"  {retry['label']}: {demo.describe(retry)}")

    after = await demo.liquidity()
    say("\nOutcomes")
    rows = []
    for row in demo.rows:
        loan_id = row["reply"].get("loan_id") or row["reply"].get("error", {}).get(
            "details", {}
        ).get("loan_id", "")
        state = (await demo.state(loan_id))["state"] if loan_id else "-"
        detail = ""
        if row["status"] != 201:
            err = row["reply"]["error"]
            detail = err["code"] + (
                f" (shortage {err['details']['shortage']})" if "shortage" in err["details"] else ""
            )
        rows.append(
            [
                row["label"],
                row["borrower"]["public"][:6] + "…",
                format_stroops(row["funded"]),
                str(row["status"]),
                state,
                detail,
            ]
        )
    say(table(["request", "borrower", "funded", "HTTP", "state now", "refusal"], rows))
    say("\nPool figures")
    keys = ["total", "locked", "reserved", "available", "active_reservations"]
    say(
        table(
            ["", *keys],
            [
                ["before", *(str(before[k]) for k in keys)],
                ["after", *(str(after[k]) for k in keys)],
            ],
        )
    )
    blocked = (
        await demo.http.get(f"/v1/pools/{demo.pool_id}/blocked?count=5", headers=demo.operator)
    ).json()
    say(
        "\nRefusals recorded in the blocked stream (GET /v1/pools/{id}/blocked, newest first, "
        "with the operator's key)"
    )
    say(
        table(
            ["loan", "reason", "required", "available", "shortage"],
            [
                [
                    e["loan_id"][:8],
                    e["reason"],
                    e["required"],
                    str(e["available"]),
                    str(e["shortage"]),
                ]
                for e in blocked["entries"]
            ],
        )
    )
    say("Browse the loans in the Temporal UI, filtered by LoanState (see `make run`'s banner).")

    # Tidy up: a borrower holds one open funding transaction at a time, so a loan left reserved
    # would decline that demo borrower's next request in another `make demo` run.
    open_loans = [
        row["reply"]["loan_id"]
        for row in demo.rows
        if row["status"] == 201
        and (await demo.state(row["reply"]["loan_id"]))["state"] == "reserved"
    ]
    for loan_id in open_loans:
        await demo.http.post(f"/v1/loans/{loan_id}/cancel", json={"reason": "end of the demo"})
    if open_loans:
        say(f"(cancelled {len(open_loans)} loan(s) still reserved, so `make demo` can run again)")
    return 0


async def main() -> int:
    env_file, chain_file = RUN / "stack.env", RUN / "chain.json"
    if not env_file.exists() or not chain_file.exists():
        say("No running stack found (.run/stack.env, .run/chain.json): start `make run` first.")
        return 1
    env = read_env(env_file)
    chain = json.loads(chain_file.read_text())
    base_url = f"http://127.0.0.1:{env.get('API_PORT', '8080')}"
    if "PLATFORM_API_KEY" not in env:
        say("No PLATFORM_API_KEY in .run/stack.env: restart `make run` (it creates the keys).")
        return 1
    async with (
        httpx.AsyncClient(
            base_url=base_url, timeout=30, headers=bearer(env["PLATFORM_API_KEY"])
        ) as http,
        httpx.AsyncClient(base_url=base_url, timeout=30) as wallet,
    ):
        try:
            ready = await http.get("/readyz")
        except httpx.HTTPError:
            say(f"The API at {base_url} does not answer: is `make run` running?")
            return 1
        if ready.status_code != 200:
            say(f"The stack is not ready: {ready.json()}")
            return 1
        return await story(Demo(http, wallet, env, chain))


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
