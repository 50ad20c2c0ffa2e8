# Every target calls the `lenet-study` CLI from a project-local virtualenv that
# it builds from pyproject.toml on first use (and rebuilds when that changes).
# GPU=1 (with any target) adds the `gpu` extra: TensorFlow's CUDA libraries.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
GPU ?=
# One stamp per flavour: switching to GPU=1 installs the extra into the existing .venv.
ifeq ($(GPU),1)
EXTRAS := dev,gpu
STAMP := $(VENV)/.installed-gpu
else
EXTRAS := dev
STAMP := $(VENV)/.installed
endif
SPACE ?= search_spaces/lenet.yaml
WORKERS ?= 1
ARGS ?=
# RAY=local|auto|ray://HOST:PORT|HOST:PORT (RAY=1: auto): `make search` runs on a Ray cluster (the dev extra,
# which every target installs, brings Ray).
RAY ?=
RAY_FLAG := $(if $(RAY),--ray $(if $(filter 1,$(RAY)),auto,$(RAY)))

comma := ,
# $(call pip_install,SPEC): the project, editable, with SPEC's extras: uv if the venv has it, else (or if uv fails) pip.
pip_install = if [ -x $(BIN)/uv ] && $(BIN)/uv pip install --quiet --python $(BIN)/python -e '$(1)'; then :; \
	else $(BIN)/pip install --quiet -e '$(1)'; fi

.PHONY: help install search test test-all bench report ui tensorboard docs docs-serve clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  make %-12s %s\n", $$1, $$2}'

# A .venv built when the project used tensorflow-cpu loses it first: two TensorFlow packages
# would share one `tensorflow/` folder (and uninstalling one afterwards would break the other).
# The packages go in with uv when it installs (about 6x faster than pip here, measured: see
# docs/benchmarks.md), else with pip: the same constraints from pyproject.toml either way.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet uv || true
	if $(BIN)/pip show --quiet tensorflow-cpu >/dev/null 2>&1; then $(BIN)/pip uninstall -y -q tensorflow-cpu; fi
	$(call pip_install,.[$(EXTRAS)])
	touch $(STAMP)

install: $(STAMP) ## build .venv from pyproject.toml (GPU=1: with CUDA for NVIDIA GPUs); other targets do it when needed

search: $(STAMP) ## run a study: make search [SPACE=search_spaces/lenet.yaml] [WORKERS=1|N|auto] [GPU=1] [RAY=local|auto|ADDRESS] [ARGS="--max-trials 5"]
	$(BIN)/lenet-study search $(SPACE) --workers $(WORKERS) $(RAY_FLAG) $(ARGS)

test: $(STAMP) ## the everyday tests: everything but those marked slow (a few minutes); ARGS="-k name" to pick
	$(BIN)/python -m pytest -q -m "not slow" --durations=10 $(ARGS)

test-all: $(STAMP) ## every test, the slow ones included (what CI runs)
	$(BIN)/python -m pytest -q --durations=25 $(ARGS)

bench: $(STAMP) ## benchmarks: tracking and workers by default; ARGS="--only throughput|search|time-to-accuracy|report"; prints figures
	$(BIN)/lenet-study bench $(ARGS)

report: $(STAMP) ## write reports/<study>/ for every study in the store (or STUDY="a b")
	$(BIN)/lenet-study report $(STUDY) $(ARGS)

ui: $(STAMP) ## browse every run: mlflow ui on the project's store; prints the latest study's runs link
	$(BIN)/lenet-study ui --host 127.0.0.1 --port 5000

tensorboard: $(STAMP) ## watch trials: tensorboard --logdir logs
	$(BIN)/tensorboard --logdir logs --host 127.0.0.1 --port 6006

# The docs extra (mkdocs-material) goes into the same .venv, on top of the flavour's stamp.
DOCS_STAMP := $(VENV)/.installed-docs
$(DOCS_STAMP): $(STAMP) pyproject.toml
	$(call pip_install,.[$(EXTRAS)$(comma)docs])
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP) ## build the documentation site into site/ (mkdocs build --strict: a broken link fails)
	$(BIN)/mkdocs build --strict

docs-serve: $(DOCS_STAMP) ## serve the documentation on http://127.0.0.1:8000, rebuilt on every edit
	$(BIN)/mkdocs serve --dev-addr 127.0.0.1:8000

clean: ## delete generated reports (keeps mlflow.db, mlruns/ and logs/)
	find reports -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} +
