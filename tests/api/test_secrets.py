"""The API refuses to start with a secret anyone could guess (operator token, JWT key, SEP-10
key), unless it runs as the local dev stack; the real server (uvicorn) fails its start-up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from stellar_sdk import Keypair

from api.auth.startup import InsecureSecrets, check_secrets
from core.settings import Settings
from tools.procs import free_port

ROOT = Path(__file__).resolve().parents[2]
GOOD = {
    "admin_token": "a" * 8 + "Z" * 24,
    "jwt_secret": "j" * 48,
    "sep10_signing_secret": Keypair.random().secret,
}


def settings(**overrides: Any) -> Settings:
    return Settings(_env_file=None, **{**GOOD, **overrides})


@pytest.mark.parametrize(
    "overrides",
    [
        {"admin_token": ""},
        {"admin_token": "change-me"},
        {"admin_token": "short"},
        {"jwt_secret": ""},
        {"jwt_secret": "change-me"},
        {"jwt_secret": "x" * 31},
        {"sep10_signing_secret": ""},
        {"sep10_signing_secret": "SNOTASEED"},
    ],
)
def test_guessable_secrets_are_refused(overrides: dict[str, str]) -> None:
    with pytest.raises(InsecureSecrets) as refused:
        check_secrets(settings(**overrides))
    assert next(iter(overrides)).upper() in str(refused.value)


def test_good_secrets_pass_and_the_dev_stack_gets_stand_ins() -> None:
    check_secrets(settings())
    dev = Settings(_env_file=None, dev_stack=True)
    check_secrets(dev)
    assert len(dev.admin_token) >= 16 and len(dev.jwt_secret) >= 32
    Keypair.from_secret(dev.sep10_signing_secret)


def test_uvicorn_refuses_to_start_with_default_secrets(tmp_path: Path) -> None:
    """`uvicorn api.app:app`, as deployed, with no secrets set: it exits and says which."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("ADMIN_TOKEN", "JWT_SECRET", "SEP10_SIGNING_SECRET", "DEV_STACK")
    }
    env["PYTHONPATH"] = str(ROOT)
    port = free_port()
    done = subprocess.run(  # cwd without .run/stack.env: only the environment counts
        [sys.executable, "-m", "uvicorn", "api.app:app", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "refusing to start with guessable secrets" in done.stderr
    assert "ADMIN_TOKEN" in done.stderr and "JWT_SECRET" in done.stderr
