# AI Chat Studio — the two commands: `make run` and `make test` (each installs what it needs).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# llama-cpp-python is compiled on install. A native build (-march=native) crashes in its AMX
# kernel on CPUs that report AMX, so build portably with the common x86-64 extensions.
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
PYTEST_ARGS ?=

.PHONY: install run test lint pytest schema migrate bench bench-peers clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

## Install, migrate (at start) and serve on http://127.0.0.1:8000 (GraphiQL at /graphql).
run: install
	$(VENV)/bin/chat-studio serve

## Install, lint and run every test (PostgreSQL and Redis suites need those servers).
test: install lint pytest

pytest: install
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(PY) -m ruff check .
	$(PY) -m mypy models resolvers schema compat_rest.py compat_ws.py compat_keys.py \
		compat_openai.py compat_identity.py compat_branches.py compat_transfer.py \
		compat_organize.py compat_tools.py compat_files.py cli_admin.py middleware.py server.py main.py chat_studio_cli.py \
		explorers.py
	# The tests, loosely: default flags, imported app modules silent (they are checked above).
	$(PY) -m mypy --follow-imports=silent tests

## Rewrite schema.graphql from the code (tests/test_schema_snapshot.py compares them).
schema: install
	$(PY) -c "from schema import schema; open('schema.graphql', 'w').write(schema.as_str() + '\n')"

migrate: install
	$(VENV)/bin/chat-studio migrate

bench: install
	$(PY) -m bench

# Optional (not in `make bench`): LiteLLM proxy and Open WebUI, pinned, each in its own venv
# under bench/.peers/ (ignored; ~4 GB, minutes the first time), measured beside our server.
bench-peers: install
	$(PY) -m bench.peers install
	$(PY) -m bench peers --db sqlite

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
