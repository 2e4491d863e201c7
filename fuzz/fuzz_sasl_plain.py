"""Atheris target: the PLAIN SASL server mechanism fed a client's messages.

The input layout and the invariants are in _harness.CHECKS["sasl_plain"]'s docstring.
Run: .venv/bin/python fuzz/fuzz_sasl_plain.py fuzz/corpus/sasl_plain
    -max_total_time=60
"""

import sys

import _atheris

if __name__ == "__main__":
    _atheris.run("sasl_plain", sys.argv)
