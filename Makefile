# Two commands on a fresh machine: `make demo` (train on the built-in synthetic scenes) and
# `make test`. Both create .venv and install the package into it when needed, with this machine's
# exact versions (constraints.txt; setup.cfg has only lower bounds).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat setup.cfg pyproject.toml constraints.txt | cksum | cut -d' ' -f1)
DEMO_DIR ?= runs/demo
SHARD_DIR := datasets/synthetic_scenes
SHARD_INDEX := $(SHARD_DIR)/train-index.json

.PHONY: install shards demo lint test test-fast clean-demo

$(STAMP): setup.cfg pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test,wandb]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

# The synthetic scenes as webdataset shards (10 x 1,000 scenes of 64 px), read by the demo configs.
# Written again when this Makefile (and so possibly their parameters) changes.
$(SHARD_INDEX): Makefile | $(STAMP)
	$(PY) tools/make_shards.py synthetic --out $(SHARD_DIR) --prefix train --num-samples 10000 \
		--samples-per-shard 1000 --image-size 64 --presplit --overwrite

shards: $(SHARD_INDEX)

demo: $(STAMP) $(SHARD_INDEX)
	$(PY) tools/demo.py --out $(DEMO_DIR)

# Style first (pyflakes + pycodestyle, 100 columns; setup.cfg [flake8]), then the whole suite.
lint: $(STAMP)
	$(PY) -m flake8 cosmos tools tests projects configs

test: $(STAMP) lint
	$(PY) -m pytest -q -rs -p no:cacheprovider tests

# The quick subset (a few minutes on 2 cores): no multi-step or CLI training runs, no multi-process
# or SLURM tests (markers in setup.cfg).
test-fast: $(STAMP)
	$(PY) -m pytest -q -rs -p no:cacheprovider -m "not slow and not distributed and not slurm" tests

clean-demo:
	rm -rf $(DEMO_DIR)
