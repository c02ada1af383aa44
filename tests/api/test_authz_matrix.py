"""Who may call what: every route against every kind of caller, over real HTTP against the real
stack (API, Temporal worker, watcher, devnet, Redis), every cell's status asserted.

Callers: nobody, a malformed credential, an expired SEP-10 token, a token signed with another
key, another borrower's token, an API key without the route's scope, a revoked key, the right
key, the borrower's own token, and ADMIN_TOKEN. Cells that must be refused run first against a
subject loan (or key, or pool) that is checked afterwards to be untouched; the cells that may
act get subjects of their own (a borrower has one open funding transaction at a time)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from stellar_sdk import Keypair

from chain.envelope import sign_envelope
from core.money import UNIT
from tests.api.conftest import ADMIN_TOKEN, JWT_SECRET
from tests.api.credentials import bearer, forge_jwt, key_secret, sep10_token, signed_challenge
from tests.api.helpers import assert_error, key, loan_body

CALLERS = (
    "anonymous",
    "malformed",
    "expired_jwt",
    "foreign_jwt",
    "other_borrower",
    "key_without_scope",
    "revoked_key",
    "right_key",
    "own_jwt",
    "admin_token",
)
REFUSED = (
    "anonymous",
    "malformed",
    "expired_jwt",
    "foreign_jwt",
    "other_borrower",
    "key_without_scope",
    "revoked_key",
)

# route -> (status per caller in CALLERS order, the scope a key without it lacks)
LOAN = (401, 401, 401, 401, 403, 403, 401)
OPERATOR = (401, 401, 401, 401, 403, 403, 401)
MATRIX: dict[str, tuple[tuple[int, ...], str | None]] = {
    "POST /v1/loans": ((*LOAN, 201, 201, 403), "loans:write"),
    "GET /v1/loans/{id}": ((*LOAN, 200, 200, 403), "loans:read"),
    "POST /v1/loans/{id}/submit": ((*LOAN, 202, 202, 403), "loans:write"),
    "POST /v1/loans/{id}/cancel": ((*LOAN, 202, 202, 403), "loans:write"),
    "GET /v1/pools/{id}/liquidity": (
        (401, 401, 401, 401, 200, 403, 401, 200, 200, 200),
        "pools:read",
    ),
    "GET /v1/pools/{id}/reservations": ((*OPERATOR, 200, 403, 200), "operator"),
    "GET /v1/pools/{id}/audit": ((*OPERATOR, 200, 403, 200), "operator"),
    "GET /v1/pools/{id}/blocked": ((*OPERATOR, 200, 403, 200), "operator"),
    "GET /v1/pools/{id}/reconciliation": ((*OPERATOR, 200, 403, 200), "operator"),
    "POST /v1/admin/pools/{id}/freeze": ((*OPERATOR, 200, 403, 200), "operator"),
    "POST /v1/admin/pools/{id}/unfreeze": ((*OPERATOR, 200, 403, 200), "operator"),
    "POST /v1/admin/reconcile": ((*OPERATOR, 200, 403, 200), "operator"),
    "GET /v1/admin/dashboard": ((*OPERATOR, 200, 403, 200), "operator"),
    "GET /v1/admin/keys": ((*OPERATOR, 200, 403, 200), "operator"),
    "POST /v1/admin/keys": ((*OPERATOR, 201, 403, 201), "operator"),
    "POST /v1/admin/keys/{id}/revoke": ((*OPERATOR, 200, 403, 200), "operator"),
    "GET /healthz": ((200,) * 10, None),
    "GET /readyz": ((200,) * 10, None),
    "GET /.well-known/stellar.toml": ((200,) * 10, None),
    "GET /v1/auth": ((200,) * 10, None),
    "POST /v1/auth": ((200,) * 10, None),
}
# A key holding everything but the route's scope.
WITHOUT = {
    "loans:write": ["loans:read", "pools:read", "operator"],
    "loans:read": ["loans:write", "pools:read", "operator"],
    "pools:read": ["loans:write", "loans:read"],
    "operator": ["loans:write", "loans:read", "pools:read"],
}


@dataclass
class Loan:
    borrower: Keypair
    loan_id: str = ""
    xdr: str = ""
    tx_hash: str = ""


@dataclass
class World:
    http: httpx.AsyncClient  # no default credential
    pool: Any
    vendor: str
    passphrase: str
    home_domain: str
    issuer: str  # the WEB_AUTH_ENDPOINT, the session tokens' `iss`
    other: Keypair  # a borrower with nothing of its own in play
    tokens: dict[str, str] = field(default_factory=dict)  # account -> SEP-10 token
    headers: dict[str, dict[str, str]] = field(default_factory=dict)  # fixed callers

    def body(self, borrower: Keypair) -> dict[str, Any]:
        return loan_body(self.pool.pool_id, borrower.public_key, self.vendor)

    async def token(self, borrower: Keypair) -> str:
        if borrower.public_key not in self.tokens:
            self.tokens[borrower.public_key] = await sep10_token(
                self.http, borrower, self.home_domain
            )
        return self.tokens[borrower.public_key]

    async def open(self, loan: Loan) -> Loan:
        resp = await self.http.post(
            "/v1/loans",
            json=self.body(loan.borrower),
            headers={**key(), **self.headers["platform"]},
        )
        assert resp.status_code == 201, resp.text
        funding = resp.json()["funding"]
        loan.loan_id, loan.tx_hash = resp.json()["loan_id"], funding["tx_hash"]
        loan.xdr = sign_envelope(funding["xdr"], loan.borrower.secret, self.passphrase)
        return loan

    async def state(self, loan: Loan) -> str:
        resp = await self.http.get(f"/v1/loans/{loan.loan_id}", headers=self.headers["platform"])
        assert resp.status_code == 200, resp.text
        state: str = resp.json()["state"]
        return state


async def caller_headers(
    world: World, caller: str, subject: Keypair, missing_scope: str | None
) -> dict[str, str]:
    """The Authorization header of `caller`, for a cell whose subject borrower is `subject`."""
    issuer = world.issuer
    match caller:
        case "anonymous":
            return {}
        case "malformed":
            return bearer("not-a-credential")
        case "expired_jwt":
            return bearer(forge_jwt(JWT_SECRET, issuer, subject.public_key, expires_in=-60))
        case "foreign_jwt":
            return bearer(forge_jwt("another-key-" + "x" * 40, issuer, subject.public_key))
        case "other_borrower":
            return bearer(await world.token(world.other))
        case "key_without_scope":
            return world.headers[f"without:{missing_scope or 'operator'}"]
        case "revoked_key":
            return world.headers["revoked"]
        case "right_key":
            return world.headers["operator" if missing_scope == "operator" else "platform"]
        case "own_jwt":
            return bearer(await world.token(subject))
        case "admin_token":
            return bearer(ADMIN_TOKEN)
    raise AssertionError(caller)


Send = Callable[[dict[str, str]], Awaitable[httpx.Response]]


@pytest.fixture
async def world(
    anon: httpx.AsyncClient, api_server: Any, saga_stack: Any, deploy_pool: Any, new_borrower: Any
) -> World:
    pool = await deploy_pool(liquidity=1_000 * UNIT)
    await saga_stack.add_pool(pool)
    vendor, other = await asyncio.gather(new_borrower(), new_borrower(pool))
    settings = api_server.settings
    w = World(
        anon,
        pool,
        vendor.public_key,
        settings.network_passphrase,
        settings.sep10_home_domain,
        f"{settings.public_url}/v1/auth",
        other,
    )
    keys = api_server.keys
    _, platform = await keys.create("matrix platform", ["loans:write", "loans:read", "pools:read"])
    _, op = await keys.create("matrix operator", ["operator"])
    revoked, revoked_token = await keys.create(
        "matrix revoked", ["loans:write", "loans:read", "pools:read", "operator"]
    )
    await keys.revoke(revoked.id)
    w.headers = {
        "platform": bearer(platform),
        "operator": bearer(op),
        "revoked": bearer(revoked_token),
    }
    for scope, held in WITHOUT.items():
        _, token = await keys.create(f"matrix without {scope}", held)
        w.headers[f"without:{scope}"] = bearer(token)
    return w


async def run_cells(
    world: World,
    route: str,
    subjects: dict[str, Any],
    send: Callable[[Any, dict[str, str]], Awaitable[httpx.Response]],
) -> dict[str, httpx.Response]:
    """Every caller's request, refused ones first; `subjects[caller]` (default
    `subjects["refused"]`) is what that cell acts on."""
    statuses, scope = MATRIX[route]
    got: dict[str, httpx.Response] = {}
    for caller in sorted(CALLERS, key=lambda c: statuses[CALLERS.index(c)] < 300):
        subject = subjects.get(caller, subjects["refused"])
        borrower = subject.borrower if isinstance(subject, Loan) else world.other
        headers = await caller_headers(world, caller, borrower, scope)
        got[caller] = resp = await send(subject, headers)
        expected = statuses[CALLERS.index(caller)]
        assert resp.status_code == expected, (route, caller, resp.status_code, resp.text)
        if expected == 401:
            assert_error(resp, 401, "unauthenticated")
            assert resp.headers["www-authenticate"].startswith("Bearer")
        elif expected == 403:
            details = assert_error(resp, 403, "forbidden")
            if caller == "key_without_scope" or (caller == "admin_token" and scope):
                assert details == {"required_scope": scope}, (route, caller, details)
    return got


async def fresh(new_borrower: Any, world: World, n: int) -> list[Keypair]:
    return list(await asyncio.gather(*[new_borrower(world.pool) for _ in range(n)]))


async def test_every_route_against_every_caller(
    world: World, new_borrower: Any, api_server: Any
) -> None:
    http, pool_id = world.http, world.pool.pool_id
    platform = world.headers["platform"]
    # The forged tokens differ from a good one only by their defect: forged right, one passes.
    control = forge_jwt(JWT_SECRET, world.issuer, world.other.public_key)
    assert (
        await http.get(f"/v1/pools/{pool_id}/liquidity", headers=bearer(control))
    ).status_code == 200
    # A reconciliation report to read, so the report route's allowed cells answer 200.
    assert (
        await http.post(
            "/v1/admin/reconcile", json={"pool_ids": [pool_id]}, headers=world.headers["operator"]
        )
    ).status_code == 200

    # -- POST /v1/loans: the subject is the borrower the body names.
    b_refused, b_key, b_jwt, b_admin = (Loan(b) for b in await fresh(new_borrower, world, 4))
    before = (await http.get(f"/v1/pools/{pool_id}/liquidity", headers=platform)).json()

    async def open_loan(subject: Loan, headers: dict[str, str]) -> httpx.Response:
        return await http.post(
            "/v1/loans", json=world.body(subject.borrower), headers={**key(), **headers}
        )

    await run_cells(
        world,
        "POST /v1/loans",
        {"refused": b_refused, "right_key": b_key, "own_jwt": b_jwt, "admin_token": b_admin},
        open_loan,
    )
    after = (await http.get(f"/v1/pools/{pool_id}/liquidity", headers=platform)).json()
    # Exactly the two allowed opens reserved anything.
    assert after["active_reservations"] == before["active_reservations"] + 2

    # -- GET /v1/loans/{id}: reads change nothing, one loan for every cell.
    read = await world.open(Loan((await fresh(new_borrower, world, 1))[0]))

    async def get_loan(subject: Loan, headers: dict[str, str]) -> httpx.Response:
        return await http.get(f"/v1/loans/{subject.loan_id}", headers=headers)

    got = await run_cells(world, "GET /v1/loans/{id}", {"refused": read}, get_loan)
    assert got["own_jwt"].json()["loan_id"] == read.loan_id

    # -- submit and cancel: refused cells on one loan that must stay reserved.
    for route, path in (
        ("POST /v1/loans/{id}/submit", "submit"),
        ("POST /v1/loans/{id}/cancel", "cancel"),
    ):
        loans = [await world.open(Loan(b)) for b in await fresh(new_borrower, world, 3)]
        refused, by_key, by_jwt = loans

        async def act(subject: Loan, headers: dict[str, str], path: str = path) -> httpx.Response:
            body = {"signed_xdr": subject.xdr} if path == "submit" else {"reason": "matrix"}
            return await http.post(
                f"/v1/loans/{subject.loan_id}/{path}", json=body, headers=headers
            )

        await run_cells(
            world, route, {"refused": refused, "right_key": by_key, "own_jwt": by_jwt}, act
        )
        assert await world.state(refused) == "reserved", route
        wanted = {"submitted", "funded"} if path == "submit" else {"cancelled"}
        assert await world.state(by_key) in wanted and await world.state(by_jwt) in wanted

    # -- pool and operator routes: the subject is the pool (or a key).
    nobody = Loan(world.other)
    simple: list[tuple[str, str, str, dict[str, Any] | None]] = [
        ("GET /v1/pools/{id}/liquidity", "GET", f"/v1/pools/{pool_id}/liquidity", None),
        ("GET /v1/pools/{id}/reservations", "GET", f"/v1/pools/{pool_id}/reservations", None),
        ("GET /v1/pools/{id}/audit", "GET", f"/v1/pools/{pool_id}/audit", None),
        ("GET /v1/pools/{id}/blocked", "GET", f"/v1/pools/{pool_id}/blocked", None),
        ("GET /v1/pools/{id}/reconciliation", "GET", f"/v1/pools/{pool_id}/reconciliation", None),
        (
            "POST /v1/admin/pools/{id}/freeze",
            "POST",
            f"/v1/admin/pools/{pool_id}/freeze",
            {"reason": "matrix"},
        ),
        (
            "POST /v1/admin/pools/{id}/unfreeze",
            "POST",
            f"/v1/admin/pools/{pool_id}/unfreeze",
            {"reason": "matrix"},
        ),
        ("POST /v1/admin/reconcile", "POST", "/v1/admin/reconcile", {"pool_ids": [pool_id]}),
        ("GET /v1/admin/dashboard", "GET", "/v1/admin/dashboard", None),
        ("GET /v1/admin/keys", "GET", "/v1/admin/keys", None),
        (
            "POST /v1/admin/keys",
            "POST",
            "/v1/admin/keys",
            {"name": "matrix-made", "scopes": ["loans:read"]},
        ),
        ("GET /healthz", "GET", "/healthz", None),
        ("GET /readyz", "GET", "/readyz", None),
        ("GET /.well-known/stellar.toml", "GET", "/.well-known/stellar.toml", None),
        ("GET /v1/auth", "GET", f"/v1/auth?account={world.other.public_key}", None),
    ]
    for route, method, url, body in simple:

        async def send(
            _: Any,
            headers: dict[str, str],
            method: str = method,
            url: str = url,
            body: dict[str, Any] | None = body,
        ) -> httpx.Response:
            return await http.request(method, url, json=body, headers=headers)

        got = await run_cells(world, route, {"refused": nobody}, send)
        if route.endswith("/freeze"):
            status = (await http.get(f"/v1/pools/{pool_id}/liquidity", headers=platform)).json()
            assert status["frozen"] is True  # frozen by the allowed cells only

    async def exchange(_: Any, headers: dict[str, str]) -> httpx.Response:
        signed = await signed_challenge(http, world.other, world.home_domain)
        return await http.post("/v1/auth", json={"transaction": signed}, headers=headers)

    await run_cells(world, "POST /v1/auth", {"refused": nobody}, exchange)
    made = [
        k
        for k in (await http.get("/v1/admin/keys", headers=world.headers["operator"])).json()[
            "keys"
        ]
        if k["name"] == "matrix-made"
    ]
    assert len(made) == 2  # the right key's and the admin token's, none of the refused cells'

    # -- revoke: refused cells aim at one key that must stay active.
    targets = {
        c: (await api_server.keys.create(f"target {c}", ["loans:read"]))[0]
        for c in ("refused", "right_key", "admin_token")
    }

    async def revoke(subject: Any, headers: dict[str, str]) -> httpx.Response:
        return await http.post(f"/v1/admin/keys/{subject.id}/revoke", headers=headers)

    await run_cells(world, "POST /v1/admin/keys/{id}/revoke", targets, revoke)
    assert (await api_server.keys.get(targets["refused"].id)).active
    assert not (await api_server.keys.get(targets["right_key"].id)).active


def test_the_matrix_covers_every_route_of_the_app(api_server: Any) -> None:
    """A route added without a row here would escape the matrix."""
    from api.app import create_app

    app = create_app(api_server.settings)
    schema = app.openapi()
    routes = {
        f"{m.upper()} {p.replace('{loan_id}', '{id}').replace('{pool_id}', '{id}')}".replace(
            "{key_id}", "{id}"
        )
        for p, ops in schema["paths"].items()
        for m in ops
    }
    assert routes == set(MATRIX), routes ^ set(MATRIX)


async def test_a_revoked_key_is_refused_on_its_next_request(
    anon: httpx.AsyncClient, api_server: Any
) -> None:
    made, token = await api_server.keys.create("revoke me", ["pools:read", "operator"])
    assert (await anon.get("/v1/admin/keys", headers=bearer(token))).status_code == 200
    resp = await anon.post(f"/v1/admin/keys/{made.id}/revoke", headers=bearer(ADMIN_TOKEN))
    assert resp.status_code == 200 and resp.json()["revoked_ms"] is not None
    assert_error(await anon.get("/v1/admin/keys", headers=bearer(token)), 401, "unauthenticated")
    # The list never shows a secret.
    listed = (await anon.get("/v1/admin/keys", headers=bearer(ADMIN_TOKEN))).text
    assert key_secret(token) not in listed and made.id in listed
    unknown = uuid.uuid4().hex[:16]
    assert_error(
        await anon.post(f"/v1/admin/keys/{unknown}/revoke", headers=bearer(ADMIN_TOKEN)),
        404,
        "key_not_found",
    )


def test_the_openapi_schema_declares_who_may_call_each_route(api_server: Any) -> None:
    from api.app import create_app

    schema = create_app(api_server.settings).openapi()
    schemes = schema["components"]["securitySchemes"]
    assert {name: (s["type"], s["scheme"]) for name, s in schemes.items()} == {
        "ApiKey": ("http", "bearer"),
        "Sep10Token": ("http", "bearer"),
        "AdminToken": ("http", "bearer"),
    }
    public = {
        "GET /healthz",
        "GET /readyz",
        "GET /.well-known/stellar.toml",
        "GET /v1/auth",
        "POST /v1/auth",
    }
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            route = f"{method.upper()} {path}"
            declared = {name for req in op.get("security", []) for name in req}
            if route in public:
                assert not declared, route
            elif path.startswith("/v1/loans"):
                assert declared == {"ApiKey", "Sep10Token"}, route
                assert {"401", "403"} <= set(op["responses"]), route
            elif path.endswith("/liquidity"):
                assert declared == {"ApiKey", "Sep10Token"}, route
            else:
                assert declared == {"ApiKey", "AdminToken"}, route
