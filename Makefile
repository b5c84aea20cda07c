# recon: developer entry points. `make help` lists them.
.DEFAULT_GOAL := help
# Recipes source .ci/services.sh, which is bash.
SHELL := /bin/bash
CARGO ?= cargo
NEXTEST := $(shell $(CARGO) nextest --version >/dev/null 2>&1 && echo yes)

.PHONY: help demo test test-db services lint fmt build fixtures

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

demo: ## Run the example jobs in jobs/ on the embedded demo data and show what they found
	$(CARGO) run --quiet -- run jobs/ --out recon-reports/demo; status=$$?; \
	echo "exit status $$status (1 = inconsistencies found); reports in recon-reports/demo/"; \
	test $$status -le 1

test: ## Run the whole test suite (cargo nextest when installed, else cargo test)
	@if [ -z "$$RECON_TEST_POSTGRES_URL$$RECON_TEST_MYSQL_URL" ]; then \
	  echo "note: RECON_TEST_POSTGRES_URL and RECON_TEST_MYSQL_URL are not set: the database tests are skipped (make test-db runs them)"; fi
ifeq ($(NEXTEST),yes)
	$(CARGO) nextest run $(if $(CI),--profile ci,)
else
	$(CARGO) test
endif

services: ## Install (if missing) and start PostgreSQL and MariaDB for the database tests; prints the exports
	@bash .ci/services.sh

test-db: ## Run the whole test suite with the database tests required (starts the servers first)
	. .ci/services.sh && $(MAKE) --no-print-directory test

lint: ## Check formatting and clippy with warnings denied (as CI does)
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt: ## Format the code
	$(CARGO) fmt

build: ## Build the release binary (target/release/recon)
	$(CARGO) build --release

fixtures: ## Rebuild the demo data in fixtures/demo from its script
	python3 fixtures/demo/build.py

.PHONY: bench bench-large

bench: ## Benchmark recon against reladiff, DuckDB and the read floors, 1M rows (writes BENCHMARKS.md)
	python3 bench/bench.py $(BENCH_ARGS)

bench-large: ## The same benchmark at 10M rows (slow; writes BENCHMARKS.md)
	python3 bench/bench.py --rows 10000000 $(BENCH_ARGS)
