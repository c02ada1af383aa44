"""The package layout a newcomer relies on (DESIGN.md, Layout): dependency arrows point inward,
the product never imports the devnet, and no two packages import each other."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = [
    "core",
    "chain",
    "channels",
    "liquidity",
    "reconcile",
    "activities",
    "workflows",
    "settlement",
    "api",
    "runtime",
]
PACKAGES = [*PRODUCT, "devnet"]
DOMAIN = ["core", "chain", "channels", "liquidity", "reconcile"]


def imported_packages(package: str) -> dict[str, set[str]]:
    """Top-level project packages each module of `package` imports (at any depth in the file)."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names & set(PACKAGES) - {package}
    return found


def package_graph() -> dict[str, set[str]]:
    return {p: set().union(*imported_packages(p).values()) for p in PACKAGES}


def test_no_package_import_cycle() -> None:
    graph = package_graph()
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            assert state.get(nxt) != "open", f"import cycle: {' -> '.join([*path, nxt])}"
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = "done"

    for package in PACKAGES:
        if package not in state:
            visit(package, [package])


def test_dependency_arrows_point_inward() -> None:
    graph = package_graph()
    for package in DOMAIN:
        outward = graph[package] & {"api", "workflows", "activities", "settlement", "runtime"}
        assert not outward, f"domain package {package} imports {outward}"
    assert "workflows" not in graph["activities"]
    assert not graph["liquidity"], "the ledger knows no chain, no loan states, no Temporal"
    assert graph["devnet"] <= {"chain", "core"}, "the devnet imports the client side at most"


def test_the_product_never_imports_nor_ships_the_devnet() -> None:
    for package in PRODUCT:
        for module, names in imported_packages(package).items():
            assert "devnet" not in names, f"{module} imports the devnet"
    for entry in ("worker.py", "watcher.py"):
        assert "devnet" not in (ROOT / entry).read_text()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    shipped = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    assert not [p for p in shipped if p.startswith("devnet")]
    assert {p.rstrip("*") for p in shipped} == set(PRODUCT)


def test_domain_packages_know_no_temporal_nor_http() -> None:
    for package in ["liquidity", "reconcile", "chain"]:
        for path in (ROOT / package).rglob("*.py"):
            text = path.read_text()
            for framework in ("temporalio", "fastapi"):
                assert f"import {framework}" not in text and f"from {framework}" not in text, (
                    f"{path.relative_to(ROOT)} imports {framework}"
                )


def test_entry_points_hold_only_main() -> None:
    for entry in ("worker.py", "watcher.py"):
        tree = ast.parse((ROOT / entry).read_text())
        defined = [
            n.name
            for n in tree.body
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        ]
        assert defined == ["main"], f"{entry} defines {defined}"


def test_one_home_for_the_unit_and_the_free_port() -> None:
    """`UNIT` (stroops per token unit) lives in core.money and `free_port` in core.net
    (re-exported by tools.procs); a copy elsewhere would drift."""
    homes = {"UNIT": "core/money.py", "free_port": "core/net.py"}
    trees = [*PACKAGES, "tools", "tests", "bench"]
    found: dict[str, list[str]] = {name: [] for name in homes}
    for path in [p for top in trees for p in sorted((ROOT / top).rglob("*.py"))]:
        for node in ast.parse(path.read_text(), str(path)).body:
            names: list[str] = []
            if isinstance(node, ast.Assign):
                names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            elif isinstance(node, ast.FunctionDef):
                names = [node.name]
            for name in set(names) & set(homes):
                found[name].append(str(path.relative_to(ROOT)))
    assert found == {name: [home] for name, home in homes.items()}, found
