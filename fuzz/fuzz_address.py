"""Atheris target: Address.parse and the MAIL FROM / RCPT TO path parsers.

The input layout and the invariants are in _harness.CHECKS["address"]'s docstring.
Run: .venv/bin/python fuzz/fuzz_address.py fuzz/corpus/address
    -max_total_time=60
"""

import sys

import _atheris

if __name__ == "__main__":
    _atheris.run("address", sys.argv)
