# Set-up and everyday tasks. `make run` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROBE_ARGS ?=

.PHONY: install run test lint bench matrix demo clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	# OONI's data models, to check our records against; its pins are for its own
	# tools (its models need only mashumaro and pyOpenSSL, in the dev extras)
	$(BIN)/python -m pip install -q --no-deps 'oonidata==0.3.0'
	touch $(STAMP)

run: install  ## measure the shipped targets once; prints the result folder
	$(BIN)/probe run $(PROBE_ARGS)

# Two processes each: the tests without the lab, then the lab's, a whole module per
# process (each module brings up its own lab, with its own prefix).
test: install  ## the whole suite (lab tests need root; they skip with a reason otherwise)
	$(BIN)/pytest -q -ra --durations=10 -m "not lab" -n 2
	$(BIN)/pytest -q -ra --durations=15 -m lab -n 2 --dist loadfile

lint: install  ## style, and the import layers of pyproject.toml
	$(BIN)/ruff check probe analysis tests bench
	$(BIN)/lint-imports --no-cache

bench: install  ## performance figures quoted in the README
	$(BIN)/python bench/run_all.py

matrix: install  ## (root, ~16 min) the probe under every throttler of the lab's zoo, judged
	$(BIN)/python bench/verdict_matrix.py

demo: install  ## bring the lab up, run the probe under a few scenarios, keep the results
	$(BIN)/python -m probe.lab.demo

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
