"""The README's examples run, so that they cannot rot."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)


def test_readme_has_an_example():
    assert python_blocks(), "README.md lost its python example"


def test_readme_examples_run():
    for block in python_blocks():
        namespace: dict[str, object] = {"__name__": "readme"}
        exec(compile(block, str(README), "exec"), namespace)


def test_readme_starts_with_the_test_command():
    head = README.read_text(encoding="utf-8")[:2000]
    assert "make test" in head
