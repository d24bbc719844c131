# The two commands: `make repro` runs the pipeline, `make test` runs the tests.
# Both first run `make setup`, which creates .venv and installs requirements.lock only when it changed.
PYTHON ?= python3
VENV := .venv
INSTALLED := $(VENV)/.installed
# Stage commands call `python -m stages.<name>`; DVC must find the venv's python first.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup repro test test-fast coverage lint lock lock-check

setup: $(INSTALLED)

# requirements.lock pins every package (made from requirements.txt by `make lock`), so two machines
# set up on different days get the same versions.
$(INSTALLED): requirements.lock
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	touch $@

# prepare --check first: DVC hashes data.folder before any stage runs, and hangs on a FIFO or a link to a device
# there (docs/crafted-inputs.md); the check refuses those in one line.
repro: setup
	python -m stages.prepare --check
	dvc repro

# Two pytest-xdist workers, a test file at a time (tests/conftest.py gives each worker its share of the cores
# and starts the slow files first). PYTEST_WORKERS=0 runs everything in one process.
PYTEST_WORKERS ?= 2
test: setup
	python -m pytest -n $(PYTEST_WORKERS) --dist loadfile

# The edit-and-test loop: every test that trains nothing through DVC or a stage process (marker `pipeline`).
test-fast: setup
	python -m pytest -n $(PYTEST_WORKERS) --dist loadfile -m "not pipeline"

# Line coverage of stages/ and transfer/ by the whole suite, stage processes included (.coveragerc);
# the data goes to .coverage-data/, the report to the terminal.
COVERAGE_DIR := $(CURDIR)/.coverage-data
coverage: setup
	rm -rf $(COVERAGE_DIR)
	mkdir -p $(COVERAGE_DIR)
	COVERAGE_RCFILE=$(CURDIR)/.coveragerc COVERAGE_FILE=$(COVERAGE_DIR)/.coverage \
		python -m coverage run -m pytest -p no:cacheprovider -n $(PYTEST_WORKERS) --dist loadfile
	COVERAGE_RCFILE=$(CURDIR)/.coveragerc COVERAGE_FILE=$(COVERAGE_DIR)/.coverage python -m coverage combine -q
	COVERAGE_RCFILE=$(CURDIR)/.coveragerc COVERAGE_FILE=$(COVERAGE_DIR)/.coverage python -m coverage report

lint: setup
	ruff check .
	ruff format --check .

# Re-pin after editing requirements.txt (pip-compile from pip-tools, with pip's own index settings).
lock: setup
	python -m pip install --quiet --disable-pip-version-check pip-tools
	pip-compile --quiet --strip-extras --no-header --allow-unsafe --no-emit-index-url --no-emit-find-links \
		requirements.txt -o requirements.lock
	python -m tools.platform_lock mark requirements.txt requirements.lock

# Does requirements.lock install on Linux x86_64, Linux aarch64 and macOS arm64? Reads the package index
# (no downloads) and the installed packages' metadata; CI runs it. See tools/platform_lock.py for why not pip.
lock-check: setup
	python -m tools.platform_lock check requirements.txt requirements.lock
