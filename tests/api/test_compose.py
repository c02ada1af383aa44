"""docker-compose.yml cannot run here (no Docker engine), so check what can be checked: it parses,
has the services the design names with healthchecks, every Python command it runs exists in the
repository, and every setting it passes is one core.settings reads."""

from __future__ import annotations

import importlib
import importlib.util
import tomllib
from pathlib import Path
from typing import Any

import yaml

from core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]


def test_services_of_the_design_are_present_with_healthchecks() -> None:
    expected = {
        "postgresql",
        "temporal",
        "temporal-ui",
        "redis",
        "devnet",
        "worker",
        "watcher",
        "api",
        "init",
    }
    assert expected <= set(SERVICES)
    for name in expected - {"init"}:  # the one-shot init job has nothing to check
        assert "healthcheck" in SERVICES[name], name
        assert SERVICES[name]["healthcheck"]["test"], name
    assert "auto-setup" in SERVICES["temporal"]["image"]
    assert SERVICES["temporal"]["environment"]["DB"].startswith("postgres")
    assert "--appendonly" in SERVICES["redis"]["command"]


def _python_target(command: list[str]) -> str | None:
    if not command or command[0] != "python":
        return None
    if command[1] == "-m":
        return command[2]
    if command[1] == "-c":
        return None
    return command[1]


def _assert_runnable(target: str) -> None:
    if target.endswith(".py"):
        assert (ROOT / target).is_file(), target
    elif target == "uvicorn":
        assert importlib.util.find_spec("uvicorn") is not None
    else:
        assert importlib.util.find_spec(target) is not None, f"module {target} not found"


def test_every_python_command_and_healthcheck_exists() -> None:
    seen = 0
    for name, service in SERVICES.items():
        for command in (service.get("command"), service.get("healthcheck", {}).get("test")):
            if not isinstance(command, list):
                continue
            argv = command[1:] if command[0] in ("CMD", "CMD-SHELL") else command
            target = _python_target(argv)
            if target is None:
                continue
            _assert_runnable(target)
            seen += 1
            if target == "uvicorn":
                module, _, attr = argv[argv.index("uvicorn") + 1].partition(":")
                assert hasattr(importlib.import_module(module), attr), name
    assert seen >= 7  # devnet, init, worker (+check), watcher (+check), api


def test_app_services_depend_on_init_and_use_known_settings() -> None:
    fields = {f.upper() for f in Settings.model_fields}
    for name in ("worker", "watcher", "api"):
        service = SERVICES[name]
        assert service["depends_on"]["init"]["condition"] == "service_completed_successfully"
        assert set(service["environment"]) <= fields, set(service["environment"]) - fields
        assert "run-state:/app/.run" in service["volumes"]
    assert (ROOT / "Dockerfile").is_file()


def test_dockerfile_copies_what_the_commands_need() -> None:
    """Every product package (pyproject's list: a new one cannot be forgotten here), the devnet,
    tools and the entry points."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    shipped = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    for package in shipped["packages"]["find"]["include"]:
        name = package.rstrip("*")
        assert f"COPY {name} ./{name}" in dockerfile, name
    for path in (
        "core",
        "liquidity",
        "chain",
        "devnet",
        "reconcile",
        "runtime",
        "settlement",
        "workflows",
        "activities",
        "api",
        "tools",
        "worker.py",
        "watcher.py",
    ):
        assert path in dockerfile, path


def test_prometheus_scrapes_every_process_on_its_metrics_port() -> None:
    """Each app process serves metrics on the port its settings name; Prometheus scrapes exactly
    those, and Grafana is provisioned from files that exist in the repository."""
    prometheus = SERVICES["prometheus"]
    mounts = {
        m.split(":")[1]: ROOT / m.split(":")[0] for m in prometheus["volumes"] if m.startswith("./")
    }
    config = yaml.safe_load(mounts["/etc/prometheus/prometheus.yml"].read_text())
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    assert mounts["/etc/prometheus/alerts.yml"].is_file()
    targets = {
        job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]
    }
    env = COMPOSE["x-app-env"]
    assert env["METRICS_HOST"] == "0.0.0.0"  # reachable from the prometheus container
    for process in ("api", "worker", "watcher"):
        port = env[f"{process.upper()}_METRICS_PORT"]
        assert targets[process] == [f"{process}:{port}"], (process, targets)
        assert f"{process}_metrics_port" in Settings.model_fields
    grafana = SERVICES["grafana"]
    for mount in grafana["volumes"]:
        source = ROOT / mount.split(":")[0]
        assert source.is_dir(), source
    provisioning = ROOT / "tools/compose/grafana/provisioning"
    datasource = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    provider = yaml.safe_load((provisioning / "dashboards/provider.yml").read_text())
    dashboards = provider["providers"][0]["options"]["path"]
    assert any(m.endswith(":" + dashboards + ":ro") for m in grafana["volumes"])
    assert (ROOT / "tools/compose/grafana/dashboards/liquidity.json").is_file()
