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

test: $(STAMP) browser
	$(BIN)/python -m pytest
	ATEN_CPU_CAPABILITY=default $(BIN)/python -m pytest -q -m "not slow and not browser" -p no:cacheprovider $(PORTABLE_TESTS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow and not browser"

test-portable: $(STAMP)
	ATEN_CPU_CAPABILITY=default $(BIN)/python -m pytest -m "not slow and not browser" -p no:cacheprovider

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
