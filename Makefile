# The two commands: `make serve` runs the server on its embedded defaults; `make test` runs
# every check. Both install from the lock (uv.lock) into .venv, so every clone runs the same
# bytes: serve installs the server alone, test adds both extras and the dev group.
# `--locked` makes uv refuse to run when pyproject.toml and uv.lock disagree.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_DIR := .uv
UV := $(UV_DIR)/bin/uv
export UV_PROJECT_ENVIRONMENT := $(VENV)
export UV_PYTHON_DOWNLOADS := never

.PHONY: serve test conformance install-server install-dev lint bench lock upgrade clean

# uv itself comes from pip, pinned by hash (scripts/uv-requirements.txt).
$(UV): scripts/uv-requirements.txt
	rm -rf $(UV_DIR)
	$(PYTHON) -m venv $(UV_DIR)
	$(UV_DIR)/bin/pip install --quiet --disable-pip-version-check --no-deps \
		--require-hashes -r scripts/uv-requirements.txt

# --inexact: a development .venv keeps its tools when the server is started from it.
install-server: $(UV)
	$(UV) sync --quiet --locked --inexact --no-default-groups --python $(PYTHON)

install-dev: $(UV)
	$(UV) sync --quiet --locked --all-extras --group dev --python $(PYTHON)

serve: install-server
	$(BIN)/tidings serve --dev

lint: install-dev
	$(BIN)/ruff check src tests bench clients/python
	$(BIN)/ruff format --check src tests bench clients/python
	$(BIN)/mypy

test: lint
	sh scripts/services.sh
	$(BIN)/pytest

# Every Autobahn section against the WebSocket transport (make test runs 1-7 and 10).
conformance: install-dev
	TIDINGS_CONFORMANCE=full $(BIN)/pytest -q -s tests/test_security_conformance.py -k autobahn

bench: install-dev
	$(BIN)/python bench/run.py

# After editing dependencies in pyproject.toml: re-lock, keeping every other pin.
lock: $(UV)
	$(UV) lock --python $(PYTHON)

# Move every pin to the newest release that the bounds allow (then run `make test`).
upgrade: $(UV)
	$(UV) lock --upgrade --python $(PYTHON)

# Start over: the environments, the caches, and the dev server's state (its database and
# the generated secret and API key in .tidings-dev.json).
clean:
	rm -rf $(VENV) $(UV_DIR) .pytest_cache .mypy_cache .ruff_cache build dist test-artifacts
	rm -f tidings.db tidings.db-wal tidings.db-shm .tidings-dev.json
