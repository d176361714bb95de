# maskfold: `make help` lists the targets. CONFIG picks the experiment (default: the demo).
CONFIG ?= configs/demo.yaml
VENV ?= .venv
PY := $(VENV)/bin/python
MASKFOLD := $(VENV)/bin/maskfold
SET ?=
JOBS ?= 1
SETS := $(foreach s,$(SET),--set $(s))
DEMO_DATA := runs/demo-data

# The maskfold command sets the allocator tuning itself (pipeline/tools/env.py); nothing to export here.

.DEFAULT_GOAL := help
.PHONY: help setup demo demo-data test check folds external train-all ensemble bench clean

help: ## Show this help
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,faces,ray]'
	touch $@

setup: $(VENV)/.installed ## Create .venv and install maskfold with its test tools

demo: setup ## Whole pipeline on generated data: demo-data, check, external, folds, train-all, ensemble
	@test -f $(DEMO_DATA)/train/train.csv || $(MASKFOLD) demo-data --out $(DEMO_DATA)
	$(MASKFOLD) check-data --config $(CONFIG) $(SETS)
	$(MASKFOLD) external --config $(CONFIG) $(SETS)
	$(MASKFOLD) folds --config $(CONFIG) $(SETS)
	$(MASKFOLD) train-all --config $(CONFIG) $(SETS) --jobs 2
	$(MASKFOLD) ensemble --config $(CONFIG) $(SETS)

demo-data: setup ## (Re)generate the demo data set under runs/demo-data
	$(MASKFOLD) demo-data --out $(DEMO_DATA)

test: setup ## Run the test suite
	GLIBC_TUNABLES=$$($(PY) -c 'from pipeline.tools.env import ALLOCATOR; print(ALLOCATOR)') $(PY) -m pytest -q

check: setup ## Check the data set named by CONFIG (exit 1 on problems)
	$(MASKFOLD) check-data --config $(CONFIG) $(SETS)

folds: setup ## Write <run_dir>/folds.csv
	$(MASKFOLD) folds --config $(CONFIG) $(SETS)

external: setup ## Masked pseudo-persons from outside faces -> <run_dir>/external/
	$(MASKFOLD) external --config $(CONFIG) $(SETS)

train-all: setup ## Train every (backbone, fold) pair of CONFIG (JOBS=N in parallel)
	$(MASKFOLD) train-all --config $(CONFIG) $(SETS) --jobs $(JOBS)

ensemble: setup ## Blend predictions; write <run_dir>/submission.csv and ensemble/report.md
	$(MASKFOLD) ensemble --config $(CONFIG) $(SETS)

bench: setup ## Loader, train-step, inference and whole-loop figures for CONFIG (needs folds)
	$(MASKFOLD) bench --config $(CONFIG) $(SETS) --out runs/bench.json

clean: ## Remove run outputs and caches (keeps .venv)
	rm -rf runs .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
