# odenets: `make train` and `make test` work on a fresh clone: they create .venv and install first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
ARGS   ?=

.PHONY: install train test lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

train: $(STAMP)  ## the default experiment (HO-ResNet-10 on the bundled digits); `make train ARGS="scheme=rk4"`
	$(PY) train.py $(ARGS)

test: $(STAMP)  ## the whole test suite
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests scripts train.py

clean:
	rm -rf outputs .pytest_cache
