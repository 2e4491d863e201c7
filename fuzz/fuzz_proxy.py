"""Atheris target: the PROXY protocol v1/v2 header parser, alone and in front of ServerConnection.

The input layout and the invariants are in _harness.CHECKS["proxy"]'s docstring.
Run: .venv/bin/python fuzz/fuzz_proxy.py fuzz/corpus/proxy
    -max_total_time=60
"""

import sys

import _atheris

if __name__ == "__main__":
    _atheris.run("proxy", sys.argv)
