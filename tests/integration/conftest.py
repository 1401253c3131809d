"""Fixtures for cutor's end-to-end tests: real `cutor serve` processes on loopback.

- `server`: one server per test module (4 workers), for tests that don't interfere.
- `make_server`: a factory for servers owned by one test (restart, auth, one worker...);
  each is stopped (SIGTERM, then SIGKILL after a bound) and its data dir removed.
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from helpers import Server  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("server")
    srv = Server(base / "data", base, extra_args=["--workers", "4"])
    srv.start()
    yield srv
    srv.cleanup()


@pytest.fixture(scope="module")
def client(server):
    return server.client


@pytest.fixture
def make_server(tmp_path_factory):
    started = []

    def make(extra_args=(), token=None):
        base = tmp_path_factory.mktemp("server")
        srv = Server(base / "data", base, extra_args=extra_args, token=token)
        srv.start()
        started.append(srv)
        return srv

    yield make
    errors = []
    for srv in started:
        try:
            srv.cleanup()
        except AssertionError as e:
            errors.append(str(e))
    assert not errors, errors
