"""The API refuses to start with a secret anyone could guess: an empty or well-known operator
token, JWT key or SEP-10 signing key would let a stranger act as the operator or as any borrower.
Only the local dev stack (`DEV_STACK=true`) may start without them, and it is told so loudly."""

from __future__ import annotations

import logging
import secrets

from stellar_sdk import Keypair

from core.settings import Settings

log = logging.getLogger("api.auth")

KNOWN_DEFAULTS = frozenset({"", "change-me", "changeme", "secret", "admin", "password", "test"})
MIN_SECRET_LENGTH = 16
MIN_JWT_SECRET_BYTES = 32  # HS256: a key shorter than the hash output weakens it


class InsecureSecrets(RuntimeError):
    pass


def problems(settings: Settings) -> list[str]:
    """What is wrong with the secrets, one line each; empty when they are fine."""
    found: list[str] = []
    token = settings.admin_token
    if token.strip().lower() in KNOWN_DEFAULTS or len(token) < MIN_SECRET_LENGTH:
        found.append(f"ADMIN_TOKEN is empty, a default or shorter than {MIN_SECRET_LENGTH}")
    jwt_secret = settings.jwt_secret
    if jwt_secret.strip().lower() in KNOWN_DEFAULTS or len(jwt_secret.encode()) < (
        MIN_JWT_SECRET_BYTES
    ):
        found.append(f"JWT_SECRET is empty, a default or shorter than {MIN_JWT_SECRET_BYTES} bytes")
    try:
        Keypair.from_secret(settings.sep10_signing_secret)
    except Exception:
        found.append("SEP10_SIGNING_SECRET is not a Stellar secret seed (S...)")
    return found


def dev_fill(settings: Settings) -> None:
    """For the dev stack only: random stand-ins for the missing secrets, set in place (valid
    for this process only: a token issued by one API process is refused by another)."""
    if (
        settings.admin_token.strip().lower() in KNOWN_DEFAULTS
        or len(settings.admin_token) < MIN_SECRET_LENGTH
    ):
        settings.admin_token = secrets.token_urlsafe(24)
    if (
        settings.jwt_secret.strip().lower() in KNOWN_DEFAULTS
        or len(settings.jwt_secret.encode()) < MIN_JWT_SECRET_BYTES
    ):
        settings.jwt_secret = secrets.token_urlsafe(48)
    try:
        Keypair.from_secret(settings.sep10_signing_secret)
    except Exception:
        settings.sep10_signing_secret = Keypair.random().secret


def check_secrets(settings: Settings) -> None:
    """Returns when the secrets are fine (or stood in for on the dev stack); otherwise
    InsecureSecrets saying what to set."""
    found = problems(settings)
    if not found:
        return
    if settings.dev_stack:
        log.warning("DEV_STACK: serving with generated stand-ins for: %s", "; ".join(found))
        dev_fill(settings)
        return
    raise InsecureSecrets(
        "refusing to start with guessable secrets: "
        + "; ".join(found)
        + ". Set them in the environment (or .run/stack.env), e.g. ADMIN_TOKEN and JWT_SECRET "
        "from `python -c 'import secrets; print(secrets.token_urlsafe(48))'` and "
        "SEP10_SIGNING_SECRET from `python -c 'from stellar_sdk import Keypair; "
        "print(Keypair.random().secret)'`; or DEV_STACK=true for a local dev stack."
    )
