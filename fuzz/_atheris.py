# Running one harness check under atheris.
#
# Only the smtp_core modules a target exercises are instrumented for
# coverage: instrumenting the whole package costs about two seconds at each
# start, which is most of a short smoke run, and coverage of modules a
# target never reaches would only slow every execution.
from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from typing import Final

_ENGINE: Final = (
    "smtp_core._connection",
    "smtp_core._content",
    "smtp_core._readers",
    "smtp_core._receivebuffer",
    "smtp_core._state",
    "smtp_core._events",
    "smtp_core._extensions",
    "smtp_core._writers",
    "smtp_core._address",
    "smtp_core._parameters",
)
INSTRUMENTED: Final[dict[str, tuple[str, ...]]] = {
    "server": (*_ENGINE, "smtp_core._proxy"),
    "client": _ENGINE,
    "address": ("smtp_core._address",),
    "parameters": ("smtp_core._parameters", "smtp_core._address"),
    "proxy": ("smtp_core._proxy",),
}
"""The modules each target instruments; every SASL target instruments sasl."""


def _smtp_core_modules() -> list[str]:
    """Every module of smtp_core, found without importing any of them."""
    spec = importlib.util.find_spec("smtp_core")
    assert spec is not None and spec.submodule_search_locations is not None
    names = ["smtp_core"]
    for directory in spec.submodule_search_locations:
        names += [
            f"smtp_core.{name[:-3]}"
            for name in sorted(os.listdir(directory))
            if name.endswith(".py") and name != "__init__.py"
        ]
    return names


def run(target: str, argv: Sequence[str]) -> None:
    """Fuzz ``_harness.CHECKS[target]`` with libFuzzer's command line ``argv``."""
    import atheris  # type: ignore[import-untyped]

    instrumented = INSTRUMENTED.get(target, ("smtp_core.sasl",))
    skipped = [name for name in _smtp_core_modules() if name not in instrumented]
    with atheris.instrument_imports(include=["smtp_core"], exclude=skipped):
        import _harness

    check = _harness.CHECKS[target]

    def test_one_input(data: bytes) -> None:
        check(data)

    atheris.Setup(list(argv), test_one_input)
    atheris.Fuzz()
