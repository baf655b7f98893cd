# The README's two commands: `make run` (train, then evaluate) and `make test`; CI adds `make lint`.
# Each creates or reuses the virtual environment in $(VENV).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test lint
run: $(VENV)/.installed-run
	$(BIN)/python train.py
	$(BIN)/python evaluate.py

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-%: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r $(if $(filter dev,$*),requirements-dev.txt,requirements.txt)
	touch $@
