# advlab — `make demo` runs the main job, `make test` the tests; both set everything up first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
# A package index to take torch and torchvision from before the rest (docs/install.md), e.g. the
# CPU-only build: make install TORCH_INDEX=https://download.pytorch.org/whl/cpu
# Empty (the default): pip's own choice, which on Linux is the CUDA build.
TORCH_INDEX ?=
# Use the shared MNIST copy beside the checkout when there is one (offline machines, CI).
ifneq ($(wildcard ../shared/datasets/MNIST/raw),)
export ADVLAB_DATA_DIR ?= $(abspath ../shared/datasets)
endif

.PHONY: install demo test test-all lint paper bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(if $(TORCH_INDEX),$(BIN)/python -m pip install torch torchvision --index-url '$(TORCH_INDEX)')
	$(BIN)/python -m pip install -e '.[dev]'
	touch $@

demo: install
	$(BIN)/advlab experiment=demo

test: install
	$(BIN)/python -m pytest -m "not slow"

test-all: install
	$(BIN)/python -m pytest

# ruff (lint + format check) and mypy, configured in pyproject.toml
lint: install
	$(BIN)/python -m ruff check advlab tests benchmarks
	$(BIN)/python -m ruff format --check advlab tests benchmarks
	$(BIN)/python -m mypy advlab

# The full-size paper experiments (long on a CPU).
paper: install
	$(BIN)/advlab experiment=paper_mnist_fgsm

# advlab against torchattacks and its fast paths against the plain ones, each in one process
# (BENCHMARKS.md). torchattacks pins an old requests: installed without its pins, with what it
# really imports. Reports go to outputs/bench/.
bench: install
	$(BIN)/python -m pip install scipy tqdm
	$(BIN)/python -m pip install --no-deps 'torchattacks>=3.5'
	$(BIN)/python benchmarks/peer.py --out outputs/bench/peer.md
	$(BIN)/python benchmarks/fast_paths.py --out outputs/bench/fast_paths.md

clean:
	rm -rf outputs .pytest_cache
