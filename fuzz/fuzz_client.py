"""Atheris target: a server's bytes into ClientConnection, after the harness's commands.

The input layout and the invariants are in _harness.CHECKS["client"]'s docstring.
Run: .venv/bin/python fuzz/fuzz_client.py fuzz/corpus/client
    -max_total_time=60
"""

import sys

import _atheris

if __name__ == "__main__":
    _atheris.run("client", sys.argv)
