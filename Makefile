# odenets: `make train` and `make test` work on a fresh clone: they create .venv and install first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
ARGS   ?=
BUDGET ?= paper
LAUNCHER ?= basic
SEEDS  ?= 0
TABLES ?=

LANDSCAPE_ARGS ?= --dataset cifar10

.PHONY: install install-locked train test test-fast test-slurm test-browser report lint clean reproduce-tables tables figures landscapes bench results verify-results revalidate eval diagnose gpu-check

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[dev]' --config-settings editable_mode=compat  # compat: Hydra scans src/hydra_plugins
	touch $(STAMP)

install: $(STAMP)

# requirements.lock is for CPython 3.11 (PYTHON=python3.11 picks it); an existing .venv keeps packages the lock
# does not name: `rm -rf .venv` first for exactly the committed records' environment.
install-locked:  ## .venv with every version the committed records were made with (requirements.lock)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c 'import sys; ok = sys.version_info[:2] == (3, 11); ok or print(f"error: requirements.lock is for CPython 3.11, \
	$(VENV) has {sys.version.split()[0]}: rm -rf $(VENV); make install-locked PYTHON=python3.11", file=sys.stderr); sys.exit(0 if ok else 2)'
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e . --config-settings editable_mode=compat
	touch $(STAMP)

train: $(STAMP)  ## the default experiment (HO-ResNet-10 on the bundled digits); `make train ARGS="scheme=rk4"`
	$(PY) train.py $(ARGS)

test: $(STAMP)  ## the whole test suite (what CI runs)
	$(PY) -m pytest

test-fast: $(STAMP)  ## the inner loop: everything but the end-to-end subprocess runs
	$(PY) -m pytest -m "not slow"

# Brings a one-node SLURM cluster up on this machine (root; apt-get installs SLURM if absent), runs the
# launcher's tests through it (tests/run/test_slurm.py; they fail instead of skipping if it does not answer)
# and brings it down, also on failure or Ctrl-C. See docs/cluster.md.
test-slurm: $(STAMP)  ## hydra/launcher=slurm against a real scheduler: a local one-node cluster (~4 min)
	@trap 'scripts/local_slurm.sh down' EXIT; \
	conf=$$(scripts/local_slurm.sh up) || exit 1; eval "$$conf"; \
	ODENETS_REQUIRE_SLURM=1 $(PY) -m pytest -m slurm tests/run/test_slurm.py $(ARGS)

reproduce-tables: $(STAMP)  ## run what is missing for every table and figure, then render them (BUDGET=paper|cpu|smoke, TABLES=a,b)
	$(PY) scripts/reproduce.py --budget $(BUDGET) --launcher $(LAUNCHER) --seeds $(SEEDS) $(if $(TABLES),--tables $(TABLES)) $(ARGS)

eval: $(STAMP)  ## evaluate a trained run: make eval RUN=outputs/runs/<run> ARGS="scheme=rk4 substeps=4"
	$(PY) -m odenets.evaluate $(RUN) $(ARGS)

diagnose: $(STAMP)  ## stability diagnostics of a trained run (spectra, regions, measured order): make diagnose RUN=outputs/runs/<run>
	$(PY) -m odenets.diagnose $(RUN) $(ARGS)

results: $(STAMP)  ## commit-ready copies of a budget's finished runs in src/odenets/reporting/reproduced/$(BUDGET)
	$(PY) scripts/collect_results.py --budget $(BUDGET) $(ARGS)

verify-results: $(STAMP)  ## rerun committed cpu runs; fails if a number drifted (ARGS="--fastest")
	$(PY) scripts/verify_results.py $(ARGS)

revalidate: $(STAMP)  ## make stale records current: rerun a seed per stale row, compare exactly (ARGS="--dry-run --all")
	$(PY) scripts/revalidate.py --budget $(BUDGET) $(ARGS)

tables: $(STAMP)  ## render the tables and the report page from stored results only
	$(PY) scripts/tables.py --budget $(BUDGET)

report: $(STAMP)  ## figures, then tables and the report page: outputs/report/index.html (BUDGET=cpu for the committed runs)
	$(PY) scripts/figures.py
	$(PY) scripts/tables.py --budget $(BUDGET)

test-browser: $(STAMP)  ## the HTML report in headless Chromium (installs Debian's chromium if it is missing)
	command -v chromium >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
	$(PY) -m pytest tests/reporting/test_report_browser.py $(ARGS)

figures: $(STAMP)  ## every paper figure that has inputs (PNG + PDF in outputs/figures); never trains
	$(PY) scripts/figures.py

landscapes: $(STAMP)  ## inputs of HO-ResNet Figs. 4 and 8 (untrained nets); LANDSCAPE_ARGS="--dataset mnist"
	$(PY) scripts/landscape.py --figures $(LANDSCAPE_ARGS)

bench: $(STAMP)  ## performance benchmark -> outputs/bench/bench.json and a table; `make bench ARGS="--quick"`
	$(PY) scripts/bench.py $(ARGS)

gpu-check: $(STAMP)  ## CUDA: GPU tests, quick bench, bf16 HO-ResNet + HeunNet -> outputs/gpu_check/summary.json
	$(PY) scripts/gpu_check.py

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests scripts train.py

clean:
	rm -rf outputs .pytest_cache
