"""Atheris target: the EXTERNAL SASL server mechanism fed a client's messages.

The input layout and the invariants are in _harness.CHECKS["sasl_external"]'s docstring.
Run: .venv/bin/python fuzz/fuzz_sasl_external.py fuzz/corpus/sasl_external
    -max_total_time=60
"""

import sys

import _atheris

if __name__ == "__main__":
    _atheris.run("sasl_external", sys.argv)
