# Forewarn — the two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint unit integration bench dashboard compile kafka-start kafka-stop schemas clean

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	@touch $@

venv: $(STAMP)

## run: local Kafka + worker + sample events, notices shown live; Ctrl-C stops all
run: $(STAMP)
	@bash dev/run

## test: lint, types, layering, unit and integration tests against a real local Kafka
test: $(STAMP)
	@bash dev/test

lint: $(STAMP)
	@bash dev/lint

unit: $(STAMP)
	$(BIN)/pytest tests/unit -q

## bench: every benchmark on the real broker (not part of `make test`); report in var/bench/report.md
bench: $(STAMP)
	@bash dev/bench

## compile: the compiled engine (mypyc) in var/compiled; run, test and bench build it themselves
compile: $(STAMP)
	$(BIN)/python dev/compile.py

## dashboard: regenerate docker/grafana/dashboards/forewarn.json from dev/dashboard.py
dashboard: $(STAMP)
	$(BIN)/python dev/dashboard.py

kafka-start:
	@dev/kafka start

kafka-stop:
	@dev/kafka stop

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache var
