# Two commands: `make run` (set up, migrate, serve) and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint fmt install demo-provider score mutate clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11+ is required"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	mkdir -p var
	$(BIN)/followup db upgrade
	$(BIN)/followup serve

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy followup
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy followup && $(BIN)/lint-imports --no-cache

fmt: $(STAMP)
	$(BIN)/ruff check --fix . && $(BIN)/ruff format .

score: $(STAMP)
	$(BIN)/python ../shared/eval/score.py --show-misses

# Mutation testing of followup/core/ against its own unit tests ([tool.mutmut] in pyproject.toml). CPU heavy and
# not part of `make test`: one worker unless MUTATE_CHILDREN says otherwise; MUTANTS='followup.core.sms*' runs
# one module. Starts afresh each time (mutmut keeps old verdicts when only the tests change).
MUTATE_CHILDREN ?= 1
mutate: $(STAMP)
	rm -rf mutants
	$(BIN)/mutmut run --max-children $(MUTATE_CHILDREN) $(MUTANTS)
	$(BIN)/python tools/mutation_scores.py --min 85

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache mutants
