# The two commands: `make repro` runs the pipeline, `make test` runs the tests.
# Both first run `make setup`, which creates .venv and installs requirements.txt only when needed.
PYTHON ?= python3
VENV := .venv
INSTALLED := $(VENV)/.installed
# Stage commands call `python -m stages.<name>`; DVC must find the venv's python first.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup repro test

setup: $(INSTALLED)

$(INSTALLED): requirements.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

repro: setup
	dvc repro

test: setup
	python -m pytest
