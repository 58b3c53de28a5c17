# One Makefile for developers and CI. Every target creates or reuses the virtualenv in
# $(VENV), builds the extension in release mode (image kernels are orders of magnitude
# slower in a debug build) and installs rawmm into it.

VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
export VIRTUAL_ENV := $(abspath $(VENV))
export PATH := $(abspath $(BIN)):$(PATH)
# transformers warns on import that torch is missing; rawmm never needs torch.
export TRANSFORMERS_VERBOSITY ?= error

.PHONY: demo test test-rust test-python lint bench bench-rust build clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Tools and the test extra, reinstalled only when pyproject.toml changes.
$(VENV)/.dev-deps: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q "maturin>=1.9,<2" "ruff>=0.6" "mypy>=1.11"
	touch $@

# The test run also installs the `torch` extra: the torchvision backend's live reference.
EXTRAS ?= test
test-python lint bench: EXTRAS = test,torch

build: $(VENV)/.dev-deps
	$(BIN)/maturin develop --release --quiet --extras $(EXTRAS)

demo: build
	$(BIN)/rawmm demo

test-rust:
	cargo test -p rawmm-core --release

test-python: build
	$(BIN)/python -m pytest -q

test: test-rust test-python

lint: build
	cargo fmt --all --check
	cargo clippy --workspace --release --all-targets -- -D warnings
	$(BIN)/ruff check python tests benches
	$(BIN)/ruff format --check python tests benches
	$(BIN)/python -m mypy.stubtest rawmm._core
	$(BIN)/mypy

bench: build
	$(BIN)/python benches/bench_layout.py
	$(BIN)/python benches/bench_pixels.py
	$(BIN)/python benches/bench_refs.py
	$(BIN)/python benches/bench_store.py
	$(BIN)/python benches/bench_out.py

# The peer bench runs once per thread count: llm-multimodal sizes its thread pool once per process.
bench-rust:
	cargo bench -p rawmm-core --bench kernels
	BENCH_THREADS=1 cargo bench -p rawmm-bench --bench peers
	cargo bench -p rawmm-bench --bench peers

clean:
	rm -rf $(VENV) target
