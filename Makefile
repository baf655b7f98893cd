# The README's two commands: `make run` (train, then evaluate) and `make test`.
# Both create or reuse the virtual environment in $(VENV).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test
run: $(VENV)/.installed-run
	$(BIN)/python train.py
	$(BIN)/python evaluate.py

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-%: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r $(if $(filter dev,$*),requirements-dev.txt,requirements.txt)
	touch $@
