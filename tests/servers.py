"""Real servers for integration tests, started by the tests on free loopback ports.

The servers themselves live in bench/_servers.py (the benchmarks use them without
pytest); here a missing binary fails the test loudly (CI installs them through
scripts/setup); nothing here ever touches a service the tests did not start.
"""

from __future__ import annotations

import pytest

from bench import _servers
from bench._servers import MissingBinaryError, Mosquitto, ServerProcess, free_port, wait_for_port

__all__ = ["MissingBinaryError", "Mosquitto", "ServerProcess", "find_binary", "free_port", "wait_for_port"]


def find_binary(name: str) -> str:
    try:
        return _servers.find_binary(name)
    except MissingBinaryError as exc:
        pytest.fail(f"{exc} (needed by this test)")
