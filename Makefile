# The README's two commands: `make run` (train, then evaluate) and `make test`; CI adds `make lint`.
# `make test-fast` runs the tests that are not marked slow, browser or network (pytest.ini).
# Each creates or reuses the virtual environment in $(VENV).
PYTHON ?= python3
# GPU=1 installs TensorFlow with CUDA (requirements-gpu.txt) instead of the CPU-only wheel, in an
# environment of its own: the two TensorFlow packages cannot share one.
VENV ?= $(if $(GPU),.venv-gpu,.venv)
BIN := $(VENV)/bin
RUN_REQUIREMENTS := $(if $(GPU),requirements-gpu.txt,requirements.txt)
# npm writes this file once runtime/ is installed.
RUNTIME := runtime/node_modules/.package-lock.json

.PHONY: run test test-fast lint
run: $(VENV)/.installed-run$(if $(GPU),-gpu)
	$(BIN)/python train.py
	$(BIN)/python evaluate.py
	@echo "to read whole numbers best (pen lifts, touching digits), train a line reader too, with"
	@echo "  $(BIN)/python train.py --arch line --out artifacts/line   (docs/line-reader.md)"

# On every core, whole files to each worker, so that a file's fixtures (a trained run) are made once.
PARALLEL := --numprocesses auto --dist loadfile

test: $(VENV)/.installed-dev $(RUNTIME)
	$(BIN)/python -m pytest $(PARALLEL)

test-fast: $(VENV)/.installed-dev $(RUNTIME)
	$(BIN)/python -m pytest $(PARALLEL) -m "not slow and not browser and not network"

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# ONNX Runtime Web for the page that reads in the browser, at the lockfile's versions (export.py
# copies it into DIR/web/; the page's tests read with it). `make run` does not need it.
$(RUNTIME): runtime/package.json runtime/package-lock.json
	cd runtime && npm ci --no-audit --no-fund

# The tests' tools go beside the run's TensorFlow (CPU or, with GPU=1, CUDA), never a second one.
# pip as pinned, not the one the venv module brings (23.2 beside Python 3.11.7): a newer one resolves
# the GPU set in half the time.
$(VENV)/.installed-%: requirements.txt requirements-gpu.txt requirements-libraries.txt requirements-serve.txt requirements-dev.txt pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet pip==26.3
	$(BIN)/python -m pip install --quiet -r $(RUN_REQUIREMENTS) $(if $(filter dev,$*),-r requirements-dev.txt)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation --editable .
	touch $@
