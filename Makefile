VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test lint peers bench serve clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy --strict smtp_core backends

# Real peers for the interop tests (swaks, Postfix's smtp-source/smtp-sink),
# from Debian's packages; without root the tests that need them are skipped.
peers:
	bash .ci/install-peers

test: lint peers
	$(PY) -m pytest

serve: $(STAMP)
	$(VENV)/bin/smtp-core serve --host 127.0.0.1 --port 8025 --maildir ./maildir

bench: $(STAMP)
	$(PY) benchmarks/engine.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
