# The two commands of the README. Each sets up what it needs on a fresh machine.
PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: up test lint bench

$(STAMP): pyproject.toml setup.py
	$(PY) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev,gpu,deep]'
	touch $(STAMP)

up: $(STAMP)          ## everything on one machine: embedded broker, simulator, analytics, alerting
	$(VENV)/bin/vigil up $(ARGS)

test: $(STAMP)        ## the whole suite, integration tests on a real broker included
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check vigil collectors analytics alerting tests
	# mypy sees the installed layout (services inside vigil/) through a tree of symlinks.
	rm -rf build/typecheck && mkdir -p build/typecheck && cp -as $(CURDIR)/vigil build/typecheck/vigil
	for s in collectors analytics alerting; do cp -as $(CURDIR)/$$s build/typecheck/vigil/$$s; done
	cd build/typecheck && $(CURDIR)/$(VENV)/bin/mypy --config-file $(CURDIR)/pyproject.toml -p vigil

bench: $(STAMP)
	$(VENV)/bin/vigil bench pipeline --json
