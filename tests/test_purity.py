"""smtp_core stays Sans-I/O: no module it imports does I/O (DESIGN.md)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

CORE = Path(__file__).resolve().parent.parent / "smtp_core"
FORBIDDEN = {
    "socket",
    "ssl",
    "select",
    "selectors",
    "asyncio",
    "threading",
    "multiprocessing",
    "subprocess",
    "time",
    "os",
    "io",
    "trio",
    "anyio",
    "backends",
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_no_core_module_imports_an_io_module():
    files = sorted(CORE.glob("*.py"))
    assert len(files) > 5
    for path in files:
        bad = imported_modules(path) & FORBIDDEN
        assert not bad, f"{path.name} imports {sorted(bad)}"


def test_importing_the_core_loads_no_io_module():
    """Checked in a fresh interpreter against one that imports nothing, so
    modules the interpreter preloads itself do not count."""
    probe = "import sys; {} print(sorted(sys.modules))"
    run = [sys.executable, "-I", "-c"]
    baseline = subprocess.run(
        [*run, probe.format("")], capture_output=True, text=True, check=True
    ).stdout
    loaded = subprocess.run(
        [*run, probe.format(f"sys.path.insert(0, {str(CORE.parent)!r}); import smtp_core;")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    new = set(eval(loaded)) - set(eval(baseline))
    assert "smtp_core" in new
    assert not {name.split(".")[0] for name in new} & FORBIDDEN, sorted(new)
