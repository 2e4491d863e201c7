"""Atheris target: a client's bytes into ServerConnection, answered by the harness.

The input layout and the invariants are in _harness.CHECKS["server"]'s docstring.
Run: .venv/bin/python fuzz/fuzz_server.py fuzz/corpus/server
    -max_total_time=60
"""

import sys

import _atheris

if __name__ == "__main__":
    _atheris.run("server", sys.argv)
