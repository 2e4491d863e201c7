VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test lint peers bench serve clean fuzz

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

# Coverage-guided fuzzing (fuzz/README.md): each atheris target in turn for
# FUZZ_SECONDS, starting from its seeds in fuzz/corpus/<target>; new corpus
# entries and crashes go to FUZZ_WORK, never into the committed seeds.
FUZZ_SECONDS ?= 60
FUZZ_WORK ?= fuzz/.work
FUZZ_TARGETS ?= $(patsubst fuzz/fuzz_%.py,%,$(wildcard fuzz/fuzz_*.py))

fuzz: $(STAMP)
	@status=0; for target in $(FUZZ_TARGETS); do \
		mkdir -p $(FUZZ_WORK)/corpus/$$target $(FUZZ_WORK)/crashes; \
		echo "== fuzz $$target for $(FUZZ_SECONDS)s"; \
		$(PY) fuzz/fuzz_$$target.py $(FUZZ_WORK)/corpus/$$target fuzz/corpus/$$target \
			-max_total_time=$(FUZZ_SECONDS) -max_len=4096 -timeout=30 -print_final_stats=1 \
			-artifact_prefix=$(FUZZ_WORK)/crashes/$$target- || status=1; \
	done; exit $$status
