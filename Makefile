# Two commands on a fresh machine: `make demo` and `make test`. Both set up .venv first (once).
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup demo test test-fast test-portable bench lint browser clean findings

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[test,demo,ray]"
	touch $(STAMP)

setup: $(STAMP)

browser:
	bash .ci/ensure-chromium.sh

demo: $(STAMP)
	$(BIN)/auditor demo --out sample_reports

# docs/findings.md's table and the default policy (auditor/policy/defaults.py), from the analyses' declarations.
findings: $(STAMP)
	$(BIN)/python -m auditor.policy.catalogue

# The tests whose numbers come from small models run a second time with torch's portable kernels
# (ATEN_CPU_CAPABILITY=default, what an ARM or pre-AVX2 machine computes): a test that holds only for this
# CPU's vector kernels fails here, not on a user's machine.
PORTABLE_TESTS ?= tests/policy tests/analyses

# The suite runs on parallel workers (pytest-xdist), one per core this process may use (at most 4), each torch on
# one thread: the cores are used and never oversubscribed. A test file stays on one worker (its module fixtures
# are built once), and the slow end-to-end files start first. TEST_WORKERS=0 runs it in this one process.
TEST_WORKERS ?= $(shell $(PYTHON) -c "import os; print(min(4, len(os.sched_getaffinity(0))))" 2>/dev/null || echo 2)
PYTEST := OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

# The 25 slowest tests are listed at the end of the run (where CI's time goes, in every CI log).
test: $(STAMP) browser
	$(PYTEST) --durations=25
	ATEN_CPU_CAPABILITY=default $(PYTEST) -q -m "not slow and not browser" -p no:cacheprovider $(PORTABLE_TESTS)

test-fast: $(STAMP)
	$(PYTEST) -m "not slow and not browser"

test-portable: $(STAMP)
	ATEN_CPU_CAPABILITY=default $(PYTEST) -m "not slow and not browser" -p no:cacheprovider

lint: $(STAMP)
	$(BIN)/python -m pip install -q -e ".[dev]"
	$(BIN)/ruff check --select F,E9,B --line-length 120 auditor tests benchmarks
	$(BIN)/mypy auditor

bench: $(STAMP)
	$(BIN)/python -m benchmarks.capture_overhead
	$(BIN)/python -m benchmarks.gradients
	$(BIN)/python -m benchmarks.attribution_memory
	$(BIN)/python -m benchmarks.probes
	$(BIN)/python -m benchmarks.ablation
	$(BIN)/python -m benchmarks.judge
	$(BIN)/python -m benchmarks.ray_executor

clean:
	rm -rf $(VENV) build dist *.egg-info
