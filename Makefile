# ai-diary: two commands on a fresh machine — `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
UV_VERSION := 0.13.8
DEMO_OUT ?= demo-output
export DEMO_OUT

.PHONY: install collector test-deps test test-fast demo bench lint run clean

$(VENV)/.installed: requirements.lock pyproject.toml exporters/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	$(VENV)/bin/uv pip sync -q --python $(PY) requirements.lock  # exact: removes what the lock dropped
	# the two distributions of this repository, editable, their dependencies already pinned by the lock
	$(VENV)/bin/uv pip install -q --python $(PY) --no-deps -e ./exporters -e .
	touch $@

install: $(VENV)/.installed

collector: install
	collector/build.sh

test-deps:
	scripts/test-deps.sh

test: install collector test-deps
	CI=$${CI:-} bash scripts/pytest.sh

# the fast tests alone: no gunicorn, collector, bridge process, Docker-free image build or Chromium (`make test` runs all)
test-fast: install
	bash scripts/pytest.sh -m "not integration"

demo: install
	-collector/build.sh || echo "collector build failed: the demo runs the in-process topology"
	$(PY) -m app.demo

bench: install collector
	$(PY) -m bench

lint: install
	VENV=$(VENV) scripts/lint.sh

run: install
	$(VENV)/bin/gunicorn -c gunicorn.conf.py -w 2 -b 127.0.0.1:8000 'app:create_app()'

clean:
	rm -rf $(VENV) collector/_build $(DEMO_OUT) .pytest_cache
