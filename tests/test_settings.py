"""Child processes (worker.py, watcher.py) get the parent's settings through the environment."""

import os

import pytest

from core.settings import Settings


def test_as_env_round_trips_every_field(monkeypatch: pytest.MonkeyPatch) -> None:
    original = Settings(
        _env_file=None,
        pools={"CPOOL": "CCREDIT", "CPOOL2": "CCREDIT2"},
        ledger_prefix="child",
        reservation_ttl_seconds=42,
        reconcile_schedule_enabled=False,
        watcher_id="w-1",
    )
    for name in list(os.environ):
        if name.upper() in original.as_env():
            monkeypatch.delenv(name)
    for name, value in original.as_env().items():
        monkeypatch.setenv(name, value)
    assert Settings(_env_file=None) == original
