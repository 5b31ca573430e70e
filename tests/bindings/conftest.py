"""Fixtures for the Python binding tests: the module under test and simulated engines."""

import os
import sys

import pytest

# The sim process helpers are shared with the integration tests.
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))

from simproc import start_sim  # noqa: E402


@pytest.fixture
def sim():
    with start_sim("--output-tokens", "8") as s:
        yield s


@pytest.fixture
def sims():
    a = start_sim("--id", "sim-a")
    b = start_sim("--id", "sim-b")
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()
