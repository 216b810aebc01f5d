# Two commands on a fresh machine: `make demo` and `make test`. Both bootstrap .venv first;
# .ci/setup installs (as root) or names (otherwise) the Debian packages they need.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-stamp

.PHONY: demo test test-fast os-packages lint bench bench-peers fmt clean fuzz chaos cli-index mutants

$(STAMP): pyproject.toml
	sh .ci/setup venv
	test -x $(BIN)/pip || $(PYTHON) -m venv --clear $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

# chromium, nginx, curl, git: the tests' operating-system packages (.ci/setup says which).
os-packages:
	sh .ci/setup test

demo: $(STAMP)
	$(BIN)/sovereign demo

lint: $(STAMP)
	$(BIN)/ruff check orchestrator tests bench infra
	$(BIN)/ruff format --check orchestrator tests bench infra
	$(BIN)/mypy
	$(BIN)/lint-imports

test: os-packages lint
	$(BIN)/pytest -q

# The inner loop: no slow (real servers, subprocess pipelines), browser or campaign (fuzz,
# chaos) tests, no linters; under two minutes on a quiet machine. `make test` runs them all.
test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not slow and not browser and not campaign"

# The campaigns of docs/security.md at full budget (smoke versions run in `make test`); each
# prints its counts at the end. FUZZ_EXAMPLES per target, CHAOS_RUNS kills per state backend,
# FAULT_RUNS seeds of the cloud fault campaign.
FUZZ_EXAMPLES ?= 10000
CHAOS_RUNS    ?= 200
FAULT_RUNS    ?= 10

fuzz: $(STAMP)
	SOVEREIGN_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest -q --timeout=0 tests/fuzz

chaos: $(STAMP)
	SOVEREIGN_CHAOS_RUNS=$(CHAOS_RUNS) SOVEREIGN_FAULT_RUNS=$(FAULT_RUNS) $(BIN)/pytest -q --timeout=0 tests/chaos

# Mutants of the fail-closed functions (tests/mutants/catalog.py), each applied in a scratch copy
# of the repository; its regression tests and the campaign aimed at it must both fail. A
# surviving mutant fails the run. MUTANT_EXAMPLES fuzz examples per campaign, seeded.
MUTANT_EXAMPLES ?= 200

mutants: $(STAMP)
	$(BIN)/python -m tests.mutants.run --examples $(MUTANT_EXAMPLES)

# Peers are measured when installed (`make bench-peers`) and skipped, with the reason, when not.
bench: $(STAMP)
	$(BIN)/python bench/route.py
	$(BIN)/python bench/plan.py
	$(BIN)/python bench/gateway.py

# Cedar and the LiteLLM proxy (pinned, pip extra `bench`), nginx from Debian (needs root or sudo).
bench-peers: $(STAMP)
	$(BIN)/python -m pip install -q -e ".[dev,bench]"
	command -v nginx >/dev/null || { apt-get update -q && apt-get install -y -q nginx-light; }

# After adding, renaming or re-wording a command: the index `sovereign --help` lists commands
# from without importing them (orchestrator/cli/index.py).
cli-index: $(STAMP)
	$(BIN)/python -m orchestrator.cli.index

fmt: $(STAMP)
	$(BIN)/ruff check --fix orchestrator tests bench infra
	$(BIN)/ruff format orchestrator tests bench infra

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
