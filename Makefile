# Two entry points, each doing its own set-up on a fresh machine:
#   make quickstart   install into .venv, then run the quick-start study into ./mlruns
#   make test         install into .venv, then run the test suite
PYTHON ?= python3
VENV ?= .venv
STAMP := $(VENV)/.installed

.PHONY: quickstart test ui

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --upgrade pip
	$(VENV)/bin/pip install -e '.[test]'
	touch $(STAMP)

quickstart: $(STAMP)
	$(VENV)/bin/harness run studies/quickstart.yaml

test: $(STAMP)
	$(VENV)/bin/python -m pytest

ui: $(STAMP)
	$(VENV)/bin/harness ui
