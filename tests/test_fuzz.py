"""The fuzz targets' smoke test: every invariant over every seed, and every
atheris target for a moment.

DESIGN.md: "fuzz/: atheris targets over the same entry points, with a seed
corpus". The check functions in fuzz/_harness.py are the targets' bodies, so
running them over fuzz/corpus/ here keeps the seeds and the invariants
honest in every CI run; the subprocess runs prove each target starts, reads
its corpus and fuzzes without finding anything in its first thousand runs.
Long runs are ``make fuzz``; fuzz/README.md says what each target checks.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

FUZZ_DIR = Path(__file__).resolve().parent.parent / "fuzz"
CORPUS = FUZZ_DIR / "corpus"
sys.path.insert(0, str(FUZZ_DIR))

import _harness  # noqa: E402

TARGETS = sorted(_harness.CHECKS)
# Enough runs to mutate past the seeds; starting Python and instrumenting
# smtp_core is most of each run's two to four seconds.
SMOKE_RUNS = 1000
SMOKE_SECONDS = 3


def test_every_target_has_a_script_and_a_corpus():
    """Each check is one atheris target with its seeds, and nothing else is."""
    scripts = {path.stem.removeprefix("fuzz_") for path in FUZZ_DIR.glob("fuzz_*.py")}
    assert scripts == set(TARGETS)
    assert {path.name for path in CORPUS.iterdir() if path.is_dir()} == set(TARGETS)
    for target in TARGETS:
        seeds = list((CORPUS / target).iterdir())
        assert 1 <= len(seeds) <= 60, (target, len(seeds))


@pytest.mark.parametrize("target", TARGETS)
def test_invariants_hold_on_every_seed(target: str):
    """Every seed passes its target's check: the seeds were built from the
    inputs the tests use, so a failure here is a regression in smtp_core (or
    an invariant the harness got wrong)."""
    check = _harness.CHECKS[target]
    summaries = {check(seed) for seed in _harness.iter_corpus(str(CORPUS / target))}
    assert summaries


def test_reference_reading_of_data_content():
    """RFC 5321 4.1.1.4 and 4.5.2: the server check compares every DATA body
    with this reading of the stream: up to the first CRLF "." CRLF (the DATA
    line's CRLF counts), one leading dot off each line, bare LF no end."""
    assert _harness._unstuff_and_end(b"..a\r\nb\r\n.\r\nQUIT\r\n") == b".a\r\nb\r\n"
    assert _harness._unstuff_and_end(b".\r\n") == b""
    assert _harness._unstuff_and_end(b"a\n.\nb\r\n") is None


@pytest.fixture(scope="module")
def smoke_runs(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, subprocess.CompletedProcess[str]]:
    """Every atheris target run once, two at a time (most of a short run is
    starting Python and instrumenting smtp_core)."""
    if importlib.util.find_spec("atheris") is None:
        pytest.skip("atheris is not installed")

    def run(target: str) -> subprocess.CompletedProcess[str]:
        work = tmp_path_factory.mktemp(target)
        scratch = work / "corpus"
        scratch.mkdir()
        command = [
            sys.executable,
            str(FUZZ_DIR / f"fuzz_{target}.py"),
            str(scratch),
            str(CORPUS / target),
            f"-runs={SMOKE_RUNS}",
            f"-max_total_time={SMOKE_SECONDS}",
            "-seed=1",
            "-max_len=4096",
            f"-artifact_prefix={work}/",
        ]
        return subprocess.run(
            command, capture_output=True, text=True, timeout=120, cwd=work, check=False
        )

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(TARGETS, pool.map(run, TARGETS), strict=True))


@pytest.mark.parametrize("target", TARGETS)
def test_atheris_target_runs_clean(
    target: str, smoke_runs: dict[str, subprocess.CompletedProcess[str]]
):
    """``fuzz/fuzz_<target>.py`` starts under atheris, reads its seeds and
    finds nothing in its first runs (libFuzzer's seed is fixed, so the
    mutations are the same every time). New corpus entries go to a scratch
    directory, never into the committed seeds."""
    result = smoke_runs[target]
    assert result.returncode == 0, result.stderr[-3000:]
    assert "DONE" in result.stderr, result.stderr[-3000:]
