"""Atheris target: the LOGIN SASL server mechanism fed a client's messages.

The input layout and the invariants are in _harness.CHECKS["sasl_login"]'s docstring.
Run: .venv/bin/python fuzz/fuzz_sasl_login.py fuzz/corpus/sasl_login
    -max_total_time=60
"""

import sys

import _atheris

if __name__ == "__main__":
    _atheris.run("sasl_login", sys.argv)
