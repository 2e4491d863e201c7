"""Atheris target: the SCRAM-SHA-256 SASL server mechanism fed a client's messages.

The input layout and the invariants are in _harness.CHECKS["sasl_scram_sha_256"]'s docstring.
Run: .venv/bin/python fuzz/fuzz_sasl_scram_sha_256.py fuzz/corpus/sasl_scram_sha_256
    -max_total_time=60
"""

import sys

import _atheris

if __name__ == "__main__":
    _atheris.run("sasl_scram_sha_256", sys.argv)
