"""Operator routes that manage API keys: create (the token is in this one response only),
list (never a secret) and revoke (refused by every API process from the next request on)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from api.auth.keys import ApiKey, UnknownScope
from api.auth.principal import SCOPES
from api.deps import AdminDep, ServicesDep
from api.errors import ApiError
from api.schemas import ErrorOut

router = APIRouter(prefix="/v1/admin/keys", tags=["admin"])

ERRORS: dict[int | str, dict[str, Any]] = {s: {"model": ErrorOut} for s in (401, 403, 404, 422)}
KeyId = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$", description="the key's id")]


class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, description="who holds it, for the list")
    scopes: list[str] = Field(
        min_length=1, max_length=len(SCOPES), description=f"any of {list(SCOPES)}"
    )
    rate_per_minute: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="POST /v1/loans per minute (default: LOAN_RATE_PER_KEY_PER_MINUTE)",
    )
    max_unsigned: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="open unsigned reservations (default: MAX_UNSIGNED_PER_KEY)",
    )


class KeyOut(BaseModel):
    id: str
    name: str
    scopes: list[str]
    created_ms: int
    revoked_ms: int | None
    rate_per_minute: int | None
    max_unsigned: int | None

    @classmethod
    def of(cls, key: ApiKey) -> KeyOut:
        return cls(
            id=key.id,
            name=key.name,
            scopes=list(key.scopes),
            created_ms=key.created_ms,
            revoked_ms=key.revoked_ms,
            rate_per_minute=key.rate_per_minute,
            max_unsigned=key.max_unsigned,
        )


class KeyCreated(KeyOut):
    key: str = Field(description="the credential: shown in this response only, store it now")


class KeyList(BaseModel):
    keys: list[KeyOut]


@router.post(
    "",
    status_code=201,
    response_model=KeyCreated,
    responses=ERRORS,
    summary="Create an API key (the token is shown once)",
)
async def create_key(_: AdminDep, svc: ServicesDep, body: KeyIn) -> KeyCreated:
    try:
        key, token = await svc.keys.create(
            body.name,
            body.scopes,
            rate_per_minute=body.rate_per_minute,
            max_unsigned=body.max_unsigned,
        )
    except UnknownScope as exc:
        raise ApiError(422, "validation_error", str(exc), {"known_scopes": list(SCOPES)}) from exc
    return KeyCreated(**KeyOut.of(key).model_dump(), key=token)


@router.get("", response_model=KeyList, responses=ERRORS, summary="Every API key, no secrets")
async def list_keys(_: AdminDep, svc: ServicesDep) -> KeyList:
    return KeyList(keys=[KeyOut.of(k) for k in await svc.keys.list()])


@router.post(
    "/{key_id}/revoke",
    response_model=KeyOut,
    responses=ERRORS,
    summary="Revoke an API key (refused from the next request on)",
)
async def revoke_key(_: AdminDep, svc: ServicesDep, key_id: KeyId) -> KeyOut:
    key = await svc.keys.revoke(key_id)
    if key is None:
        raise ApiError(404, "key_not_found", "no such API key", {"key_id": key_id})
    return KeyOut.of(key)
