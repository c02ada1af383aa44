# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv lock browser run test lint typecheck demo bench-ledger bench-e2e bench-scale bench-auth clean

venv: $(STAMP)

# Installs exactly the lock (every transitive version, each file's hash checked), then the project
# itself without resolving anything: a fresh clone gets what CI tested. `make lock` rewrites it.
LOCK := requirements.lock
RUNTIME_LOCK := requirements-runtime.lock
$(STAMP): $(LOCK) pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes -r $(LOCK)
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# Regenerates both locks from pyproject.toml, keeping every pin that still satisfies it
# (`make lock UPGRADE=1` moves everything to the newest allowed). requirements-runtime.lock
# (the image's) is the same resolution without the dev extra.
UV_COMPILE = $(VENV)/bin/uv pip compile pyproject.toml --universal --python-version 3.11 \
	--generate-hashes --quiet --custom-compile-command "make lock" $(if $(UPGRADE),--upgrade)
lock: venv
	$(UV_COMPILE) --extra dev -o $(LOCK)
	$(UV_COMPILE) --constraint $(LOCK) -o $(RUNTIME_LOCK)

run: venv
	$(PY) -m tools.stack

test: venv browser lint
	$(PY) -m pytest -q

# The dashboard's browser test drives Debian's chromium through Playwright (executable_path);
# Playwright's own browser download is never used. Installed once, when missing.
CHROMIUM := /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || { command -v apt-get >/dev/null || { echo "need $(CHROMIUM) (Debian package chromium)"; exit 1; }; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }
	@test -x $(CHROMIUM)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy core liquidity chain channels devnet reconcile runtime settlement workflows activities api tools worker.py watcher.py tests bench

demo: venv
	$(PY) -m tools.demo

bench-ledger: venv
	$(PY) -m bench.ledger

bench-e2e: venv
	$(PY) -m bench.e2e

bench-scale: venv
	$(PY) -m bench.scale

bench-auth: venv
	$(PY) -m bench.auth

clean:
	rm -rf $(VENV) .run .pytest_cache .mypy_cache .ruff_cache .hypothesis
