# Two commands on a fresh machine: `make demo` (train on the built-in synthetic scenes) and
# `make test`. Both create .venv and install the package into it when needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat setup.cfg pyproject.toml | cksum | cut -d' ' -f1)
DEMO_DIR ?= runs/demo

.PHONY: install demo test clean-demo

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) tools/train_net.py --config-file configs/clip/clip_tiny_synthetic.py train.output_dir=$(DEMO_DIR)

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider tests

clean-demo:
	rm -rf $(DEMO_DIR)
