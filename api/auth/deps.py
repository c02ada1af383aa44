"""FastAPI dependencies that turn `Authorization: Bearer <credential>` into a Principal and
enforce scopes. Built on `fastapi.security.HTTPBearer`, so the OpenAPI schema declares the
security schemes (ApiKey, Sep10Token, AdminToken) and which routes need which.

Refusals use the one error shape: 401 `unauthenticated` (with `WWW-Authenticate: Bearer`) when
no valid credential was shown, 403 `forbidden` naming the missing scope when the credential is
valid but not enough. The credential is looked up on every request (API keys in Redis, no
cache), so a revoked key is refused by every API process at once."""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.auth.keys import looks_like_key
from api.auth.principal import OPERATOR, POOLS_READ, Principal
from api.auth.tokens import InvalidToken
from api.errors import ApiError

if TYPE_CHECKING:
    from api.deps import Services

Credentials = HTTPAuthorizationCredentials | None

api_key_scheme = HTTPBearer(
    scheme_name="ApiKey",
    bearerFormat="lsk_<id>_<secret>",
    auto_error=False,
    description="Platform and operator API keys (`python -m tools.keys create`); scopes "
    "loans:write, loans:read, pools:read, operator.",
)
sep10_scheme = HTTPBearer(
    scheme_name="Sep10Token",
    bearerFormat="JWT",
    auto_error=False,
    description="A borrower wallet's SEP-10 session token (GET then POST /v1/auth); acts "
    "only on the account's own loans.",
)
admin_scheme = HTTPBearer(
    scheme_name="AdminToken",
    auto_error=False,
    description="The bootstrap operator credential (ADMIN_TOKEN): scope operator only.",
)

CHALLENGE = {"WWW-Authenticate": "Bearer"}
INVALID = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
ADMIN = Principal("admin", "admin", frozenset({OPERATOR}))


def unauthenticated(message: str, *, invalid: bool = False) -> ApiError:
    return ApiError(401, "unauthenticated", message, headers=INVALID if invalid else CHALLENGE)


def forbidden(scope: str | None, message: str | None = None) -> ApiError:
    """A 403 that names the missing scope; with `scope=None` it names nothing (a borrower token
    on a loan that is not its own learns nothing about it, not even whether it exists)."""
    if scope is None:
        return ApiError(403, "forbidden", message or "this credential may not do that")
    return ApiError(
        403,
        "forbidden",
        message or f"this credential lacks the scope `{scope}`",
        {"required_scope": scope},
    )


def _services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


async def resolve(svc: Services, token: str) -> Principal:
    """The principal a bearer credential proves, or a 401."""
    raw = token.strip().encode()
    if hmac.compare_digest(raw, svc.settings.admin_token.encode()):
        return ADMIN
    text = raw.decode(errors="replace")
    if looks_like_key(text):
        key = await svc.keys.authenticate(text)
        if key is None:
            raise unauthenticated("the API key is unknown or revoked", invalid=True)
        return key.principal()
    if text.count(".") == 2:
        try:
            return Principal("account", svc.tokens.verify(text))
        except InvalidToken as exc:
            raise unauthenticated(str(exc), invalid=True) from exc
    raise unauthenticated(
        "the bearer credential is neither an API key nor a SEP-10 token", invalid=True
    )


async def _principal(request: Request, creds: Credentials) -> Principal:
    if creds is None or not creds.credentials.strip():
        raise unauthenticated("send Authorization: Bearer <API key or SEP-10 token>")
    cached: Principal | None = getattr(request.state, "principal", None)
    if cached is None:
        cached = await resolve(_services(request), creds.credentials)
        request.state.principal = cached
    return cached


async def caller(
    request: Request,
    key: Annotated[Credentials, Security(api_key_scheme)],
    token: Annotated[Credentials, Security(sep10_scheme)],
) -> Principal:
    """Any authenticated caller: an API key, a borrower token or the admin token."""
    return await _principal(request, key or token)


async def operator(
    request: Request,
    key: Annotated[Credentials, Security(api_key_scheme)],
    admin: Annotated[Credentials, Security(admin_scheme)],
) -> Principal:
    principal = await _principal(request, key or admin)
    if not principal.has(OPERATOR):
        raise forbidden(OPERATOR)
    return principal


async def pool_reader(
    request: Request,
    key: Annotated[Credentials, Security(api_key_scheme)],
    token: Annotated[Credentials, Security(sep10_scheme)],
) -> Principal | None:
    """Pool liquidity: any borrower token, a key with pools:read (or operator); nobody at all
    needs a credential when PUBLIC_LIQUIDITY is set."""
    if _services(request).settings.public_liquidity:
        return None
    principal = await _principal(request, key or token)
    if principal.kind != "account" and not (principal.has(POOLS_READ) or principal.has(OPERATOR)):
        raise forbidden(POOLS_READ)
    return principal


def require_scope(principal: Principal, scope: str) -> None:
    """For API keys and the admin token: 403 unless the scope is held. Borrower tokens are
    checked by ownership instead (see the loan routes)."""
    if principal.kind != "account" and not principal.has(scope):
        raise forbidden(scope)


CallerDep = Annotated[Principal, Depends(caller)]
OperatorDep = Annotated[Principal, Depends(operator)]
PoolReaderDep = Annotated[Principal | None, Depends(pool_reader)]
