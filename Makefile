# `make demo` and `make test` work on a fresh machine: each creates .venv when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.dlgrade-installed

.PHONY: setup test test-fast lint demo audit bench gpu-check clean wheelhouse install-offline image

setup: $(STAMP)

# Re-installs only when pyproject.toml changes; quick when already set up.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[dev,course,tested]' 2>&1 | grep -v "^WARNING: Location" || true
	$(PY) -c "import torch, papermill, nbgrader, fvcore, harness"
	$(PY) -m ipykernel install --sys-prefix --name dlgrade --display-name "Python (dlgrade)"
	touch $(STAMP)

test: setup lint
	$(PY) -m pytest -q

# ruff: pyflakes (unused imports, undefined names), pycodestyle, import order, bugbear ([tool.ruff] in pyproject.toml)
lint: setup
	$(VENV)/bin/ruff check .

test-fast: setup lint
	$(PY) -m pytest -q -m "not slow"

demo: setup
	$(VENV)/bin/dlgrade demo --out demo_out

# Each bundled assignment's verdicts over seeds 0-1 x kernel threads 1, 2, one run at a time (a 2-thread kernel sharing
# 2 cores with another run spins idle OpenMP threads and inflates its CPU time): docs/audit/<id>.md, checked by
# tests/test_committed_audits.py. Stops at the first assignment with a fragile verdict (its table is still written).
# One assignment: make audit AUDIT_ASSIGNMENTS=lab_pruning
AUDIT_SEEDS ?= 2
AUDIT_ASSIGNMENTS ?= $(notdir $(patsubst %/assignment.toml,%,$(wildcard assignments/*/assignment.toml)))
audit: setup
	for id in $(AUDIT_ASSIGNMENTS); do \
	    $(VENV)/bin/dlgrade audit $$id --seeds $(AUDIT_SEEDS) > docs/audit/$$id.md || exit 1; done

# One table that proves a GPU runner (docs/gpu.md); on a machine without a GPU its GPU rows say "no GPU: skipped".
gpu-check: setup
	$(PY) -m grading.gpu_check

bench: setup
	$(PY) benchmarks/overhead.py | tee benchmarks/overhead.md
	$(PY) benchmarks/reference_vs_baseline.py | tee benchmarks/reference_vs_baseline.md
	$(PY) benchmarks/batch_scaling.py 2 | tee benchmarks/batch_scaling.md
	$(PY) benchmarks/timing_stability.py | tee benchmarks/timing_stability.md
	$(PY) benchmarks/sandbox_overhead.py | tee benchmarks/sandbox_overhead.md

# Offline install for worker / GPU nodes (docs/install.md). On a machine with internet, for the node's Python/platform:
#   make wheelhouse WHEELHOUSE=wheelhouse PY_VERSION=3.12 PLATFORM=manylinux_2_28_x86_64 SKIP="numpy scipy ..."
# (run by that Python: pip evaluates dependency markers against the interpreter that runs it; WHEEL_PYTHON=its path)
# then on the node, with only that folder: make install-offline WHEELHOUSE=wheelhouse
WHEELHOUSE ?= wheelhouse
PY_VERSION ?=
WHEEL_PYTHON ?= $(if $(PY_VERSION),python$(PY_VERSION),$(PYTHON))
PLATFORM ?= manylinux_2_28_x86_64
EXTRAS ?=
SKIP ?=

wheelhouse:
	$(WHEEL_PYTHON) .ci/wheelhouse.py --dest $(WHEELHOUSE) --platform $(PLATFORM) --extras "$(EXTRAS)" --skip "$(SKIP)"

# The node's own torch (>= 2.11) stays: .venv sees the system's packages, and pip adds only what is missing, from
# $(WHEELHOUSE) alone, without resolving torch's own dependencies (a CUDA torch installed another way has none
# recorded). Marks .venv as set up, so that later targets do not reinstall from an index.
install-offline:
	test -x $(PY) || $(PYTHON) -m venv --system-site-packages --without-pip $(VENV)
	$(PY) -m pip install --no-index --find-links $(WHEELHOUSE) -r $(WHEELHOUSE)/requirements.txt
	$(PY) -m pip install --no-index --find-links $(WHEELHOUSE) --no-deps -e .
	$(PY) -c "import torch, torchvision, papermill, fvcore, harness; from packaging.version import Version; \
		print('dlgrade on torch', torch.__version__); assert Version(torch.__version__) >= Version('2.11')"
	$(PY) -m ipykernel install --sys-prefix --name dlgrade --display-name "Python (dlgrade)"
	test ! -d $(VENV) || touch $(STAMP)

clean:
	rm -rf $(VENV) demo_out dlgrade_out .pytest_cache

# The CPU image (docs/containers.md); Podman: `podman build -t dlgrade:cpu .`
image:
	docker build -t dlgrade:cpu .
