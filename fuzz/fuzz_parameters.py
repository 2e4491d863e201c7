"""Atheris target: the MAIL and RCPT parameter parsers, and xtext.

The input layout and the invariants are in _harness.CHECKS["parameters"]'s docstring.
Run: .venv/bin/python fuzz/fuzz_parameters.py fuzz/corpus/parameters
    -max_total_time=60
"""

import sys

import _atheris

if __name__ == "__main__":
    _atheris.run("parameters", sys.argv)
