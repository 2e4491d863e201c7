"""Atheris target: the OAUTHBEARER SASL server mechanism fed a client's messages.

The input layout and the invariants are in _harness.CHECKS["sasl_oauthbearer"]'s docstring.
Run: .venv/bin/python fuzz/fuzz_sasl_oauthbearer.py fuzz/corpus/sasl_oauthbearer
    -max_total_time=60
"""

import sys

import _atheris

if __name__ == "__main__":
    _atheris.run("sasl_oauthbearer", sys.argv)
