# odenets: `make train` and `make test` work on a fresh clone: they create .venv and install first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
ARGS   ?=
BUDGET ?= paper
LAUNCHER ?= basic
SEEDS  ?= 0

.PHONY: install train test lint clean reproduce-tables tables figures

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

train: $(STAMP)  ## the default experiment (HO-ResNet-10 on the bundled digits); `make train ARGS="scheme=rk4"`
	$(PY) train.py $(ARGS)

test: $(STAMP)  ## the whole test suite
	$(PY) -m pytest

reproduce-tables: $(STAMP)  ## run what is missing for every table and figure, then render them (BUDGET=paper|smoke)
	$(PY) scripts/reproduce.py --budget $(BUDGET) --launcher $(LAUNCHER) --seeds $(SEEDS)

tables: $(STAMP)  ## render the tables and the report page from stored results only
	$(PY) scripts/tables.py --budget $(BUDGET)

figures: $(STAMP)  ## render the figures from stored results and arrays only
	$(PY) scripts/figures.py

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests scripts train.py

clean:
	rm -rf outputs .pytest_cache
