# `make demo` and `make test` work on a fresh machine: each creates .venv when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.dlgrade-installed

.PHONY: setup test test-fast demo bench clean

setup: $(STAMP)

# Re-installs only when pyproject.toml changes; quick when already set up.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[dev]' 2>&1 | grep -v "^WARNING: Location" || true
	$(PY) -c "import torch, papermill, nbgrader, fvcore, harness"
	$(PY) -m ipykernel install --sys-prefix --name dlgrade --display-name "Python (dlgrade)"
	touch $(STAMP)

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

demo: setup
	$(VENV)/bin/dlgrade demo --out demo_out

bench: setup
	$(PY) benchmarks/overhead.py | tee benchmarks/overhead.md
	$(PY) benchmarks/reference_vs_baseline.py | tee benchmarks/reference_vs_baseline.md
	$(PY) benchmarks/batch_scaling.py 2 | tee benchmarks/batch_scaling.md
	$(PY) benchmarks/timing_stability.py | tee benchmarks/timing_stability.md

clean:
	rm -rf $(VENV) demo_out dlgrade_out .pytest_cache
