"""The lock files a fresh clone installs (`make venv`, the image) still match pyproject.toml.

Regenerating them needs the network, so this checks offline what a forgotten `make lock` breaks:
every requirement pyproject.toml names is pinned, at a version its specifier admits, and the
image's runtime lock is the same resolution as the dev lock, minus the dev extra."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)", re.MULTILINE)


def pins(name: str) -> dict[str, str]:
    text = (ROOT / name).read_text()
    found: dict[str, str] = {canonicalize_name(m[1]): m[2] for m in PIN.finditer(text)}
    assert found, f"{name} pins nothing"
    return found


def test_every_requirement_is_pinned_within_its_specifier() -> None:
    wanted = [*PROJECT["dependencies"], *PROJECT["optional-dependencies"]["dev"]]
    for lock, requirements in (
        ("requirements.lock", wanted),
        ("requirements-runtime.lock", PROJECT["dependencies"]),
    ):
        pinned = pins(lock)
        for line in requirements:
            requirement = Requirement(line)
            name = canonicalize_name(requirement.name)
            assert name in pinned, f"{requirement.name} is not in {lock}: run `make lock`"
            assert requirement.specifier.contains(pinned[name], prereleases=True), (
                f"{lock} pins {name}=={pinned[name]}, pyproject.toml wants {requirement}: "
                "run `make lock`"
            )


def test_runtime_lock_is_the_dev_lock_without_the_dev_extra() -> None:
    dev, runtime = pins("requirements.lock"), pins("requirements-runtime.lock")
    assert {name: dev.get(name) for name in runtime} == runtime
    assert "pytest" in dev and "pytest" not in runtime


def test_every_pin_carries_hashes() -> None:
    """`pip install --require-hashes` refuses a lock with an unhashed pin; fail here first."""
    for lock in ("requirements.lock", "requirements-runtime.lock"):
        entries = re.split(r"\n(?=[A-Za-z0-9])", (ROOT / lock).read_text())
        for entry in entries:
            if PIN.match(entry):
                assert "--hash=sha256:" in entry, entry.splitlines()[0]
