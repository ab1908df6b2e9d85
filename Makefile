# Set-up, test and main-job targets; README.md quotes these.
PY ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
DATA ?= ../shared/data

.PHONY: install ops test mtop-en mtop-all clean

install:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -r requirements-nodeps.txt
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .

ops:
	$(BIN)/python tools/build_ops.py

test:
	$(BIN)/python -m pytest -q tests

clean:
	rm -rf build ondevice_nlp/_lib/*.so *.egg-info
