# maskfold: `make help` lists the targets. CONFIG picks the experiment (default: the demo).
CONFIG ?= configs/demo.yaml
VENV ?= .venv
PY := $(VENV)/bin/python
MASKFOLD := $(VENV)/bin/maskfold
SET ?=
JOBS ?= 1
RUNS ?= $(patsubst %/run.json,%,$(wildcard runs/*/run.json))
BACKBONE ?=
FOLD ?= 0
TEST_WORKERS ?= auto
REFIT ?=
IMAGES ?=
OUT ?= predictions.csv
MEMBER ?=
TOP ?= 24
# SET="k=v k2=[a, b]" -> one --set per key=value: split only where a new `key=` begins, so values may hold spaces.
SETS := $(shell printf '%s' '$(subst ','\'',$(SET))' | python3 -c 'import re, shlex, sys; s = sys.stdin.read().strip(); print(" ".join("--set " + shlex.quote(p) for p in re.split(r"\s+(?=[A-Za-z_][\w.]*=)", s)) if s else "")')
DEMO_DATA := runs/demo-data
RUN ?= runs/$(basename $(notdir $(CONFIG)))

# The maskfold command sets the allocator tuning itself (pipeline/tools/env.py); nothing to export here.

.DEFAULT_GOAL := help
.PHONY: help setup docs docs-build demo demo-data test check folds external pseudo train train-all ensemble audit tune predict compare cache bench clean clean-runs

help: ## Show this help
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'
	@echo
	@echo "  Variables: CONFIG=configs/x.yaml (default configs/demo.yaml)  SET=\"train.epochs=3 backbones.0.lr=1e-4\""
	@echo "             JOBS=N (pairs trained at once)  RUNS=\"runs/a runs/b\" (compare)  BACKBONE= FOLD= (train)"
	@echo "             REFIT=1 (train-all: then each backbone on every person, train.refit)"
	@echo "             RUN=runs/x IMAGES=folder OUT=file.csv (predict; RUN defaults to runs/<config name>)"
	@echo "             MEMBER=backbone TOP=N (audit: one member's OOF instead of the blend's; suspects shown)"

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,docs,faces,ray,mlflow,wandb,tune]'
	touch $@

setup: $(VENV)/.installed ## Create .venv and install maskfold with its test tools

docs: setup ## Serve the documentation at http://127.0.0.1:8000 (reference pages generated from the code)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve

docs-build: setup ## Build the documentation into site/ (strict: a broken link fails)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

demo: setup ## Whole pipeline on generated data: demo-data, check, external, folds, train-all, ensemble
	@test -f $(DEMO_DATA)/train/train.csv || $(MASKFOLD) demo-data --out $(DEMO_DATA)
	$(MASKFOLD) check-data --config $(CONFIG) $(SETS)
	$(MASKFOLD) external --config $(CONFIG) $(SETS)
	$(MASKFOLD) folds --config $(CONFIG) $(SETS)
	$(MASKFOLD) train-all --config $(CONFIG) $(SETS) --jobs 2
	$(MASKFOLD) ensemble --config $(CONFIG) $(SETS)

demo-data: setup ## (Re)generate the demo data set under runs/demo-data
	$(MASKFOLD) demo-data --out $(DEMO_DATA)

test: setup ## Run the test suite, a worker per core (TEST_WORKERS=N; 0 runs it in one process), file by file
	GLIBC_TUNABLES=$$($(PY) -c 'from pipeline.tools.env import ALLOCATOR; print(ALLOCATOR)') $(PY) -m pytest -q \
		-n $(TEST_WORKERS) --dist loadgroup

check: setup ## Check the data set named by CONFIG (exit 1 on problems)
	$(MASKFOLD) check-data --config $(CONFIG) $(SETS)

folds: setup ## Write <run_dir>/folds.csv
	$(MASKFOLD) folds --config $(CONFIG) $(SETS)

external: setup ## Masked pseudo-persons from outside faces -> <run_dir>/external/
	$(MASKFOLD) external --config $(CONFIG) $(SETS)

pseudo: setup ## Eval photos labelled by pseudo.from_run's ensemble -> <run_dir>/pseudo/ (set data.use_pseudo)
	$(MASKFOLD) pseudo --config $(CONFIG) $(SETS)

train-all: setup ## Train every (backbone, fold) pair of CONFIG (JOBS=N in parallel; REFIT=1: then full-data refits)
	$(MASKFOLD) train-all --config $(CONFIG) $(SETS) --jobs $(JOBS) $(if $(REFIT),--refit)

ensemble: setup ## Blend predictions; write <run_dir>/submission.csv and ensemble/report.md
	$(MASKFOLD) ensemble --config $(CONFIG) $(SETS)

audit: setup ## Rank probable label errors of a finished run -> <run_dir>/audit/ (MEMBER=backbone TOP=N)
	$(MASKFOLD) audit --config $(CONFIG) $(SETS) --top $(TOP) $(if $(MEMBER),--member $(MEMBER))

tune: setup ## Optuna study over the config's tune.params (default configs/demo-tune.yaml): <run_dir>/tune/best.yaml
	$(MASKFOLD) tune --config $(if $(filter configs/demo.yaml,$(CONFIG)),configs/demo-tune.yaml,$(CONFIG)) $(SETS)

train: setup ## Train one pair: make train BACKBONE=resnet10t FOLD=0
	$(MASKFOLD) train --config $(CONFIG) $(SETS) --backbone $(BACKBONE) --fold $(FOLD)

predict: setup ## Predict a folder of photos with a finished run: make predict IMAGES=dir [RUN=runs/x] [OUT=f.csv]
	$(MASKFOLD) predict --run $(RUN) --images $(IMAGES) --out $(OUT)

compare: setup ## Compare finished runs side by side: make compare RUNS="runs/a runs/b"
	$(MASKFOLD) compare $(RUNS)

cache: setup ## List the shared photo caches (make cache PRUNE=1 removes them all)
	$(MASKFOLD) cache $(if $(PRUNE),--prune)

bench: setup ## Loader, train-step, inference and whole-loop figures for CONFIG (needs folds)
	$(MASKFOLD) bench --config $(CONFIG) $(SETS) --out runs/bench.json

clean: ## Remove Python and test caches (keeps runs/, trained models and .venv)
	rm -rf .pytest_cache
	find . -name __pycache__ -type d -prune -not -path './.venv/*' -exec rm -rf {} +

clean-runs: ## Delete runs/: every trained model, prediction, submission and the photo cache
	rm -rf runs
