"""Atheris target: the XOAUTH2 SASL server mechanism fed a client's messages.

The input layout and the invariants are in _harness.CHECKS["sasl_xoauth2"]'s docstring.
Run: .venv/bin/python fuzz/fuzz_sasl_xoauth2.py fuzz/corpus/sasl_xoauth2
    -max_total_time=60
"""

import sys

import _atheris

if __name__ == "__main__":
    _atheris.run("sasl_xoauth2", sys.argv)
