"""Atheris target: the CRAM-MD5 SASL server mechanism fed a client's messages.

The input layout and the invariants are in _harness.CHECKS["sasl_cram_md5"]'s docstring.
Run: .venv/bin/python fuzz/fuzz_sasl_cram_md5.py fuzz/corpus/sasl_cram_md5
    -max_total_time=60
"""

import sys

import _atheris

if __name__ == "__main__":
    _atheris.run("sasl_cram_md5", sys.argv)
