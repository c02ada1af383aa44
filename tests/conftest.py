"""Fixtures shared by the whole suite live in tests/fixtures/, one module per real component."""

pytest_plugins = [
    "tests.fixtures.redis",
    "tests.fixtures.devnet",
    "tests.fixtures.temporal",
]
