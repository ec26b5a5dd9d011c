# Two commands do all the set-up and work on a fresh machine:
#   make run   - create or reuse .venv with the pinned requirements, then run the workflow on the default config
#   make test  - same set-up, then the whole test suite
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)
CORES ?= all
EXPERIMENT ?= default

.PHONY: run test test-fast lint format dag serve clean venv

venv: $(VENV)/.installed

# The stamp is rebuilt when the lock changes, so a pull that bumps a pin reinstalls.
$(VENV)/.installed: requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

run: venv
	snakemake --cores $(CORES)

test: venv
	$(PY) -m pytest

test-fast: venv
	$(PY) -m pytest -m "not slow"

lint: venv
	snakemake --lint
	snakefmt --check Snakefile rules/
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: venv
	snakefmt Snakefile rules/
	$(PY) -m ruff format .

# The DAG picture in the README (needs Graphviz's `dot`).
dag: venv
	snakemake --forceall --dag | dot -Tsvg > docs/dag.svg

# Start the server on the merged model of EXPERIMENT and keep it running (Ctrl-C stops it).
serve: venv
	$(PY) -m conch.server --model results/merged/$(EXPERIMENT)/model --name $(EXPERIMENT)

clean:
	rm -rf results logs benchmarks .snakemake/incomplete
