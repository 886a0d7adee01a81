"""A cluster on loopback for the scale-out tests: a real PostgreSQL ledger (the session's
server, a fresh database per test), a real S3 server (moto) for the assets, and gateways and
workers as processes (tests/support/cluster.py)."""

from __future__ import annotations

import pytest

from tests.support.cluster import Cluster
from tests.support.s3_server import start_moto


@pytest.fixture(scope="module")
def s3():
    server = start_moto()
    yield server
    server.stop()


@pytest.fixture
def cluster(tmp_path, pg_url, s3):
    c = Cluster(tmp_path / "cluster", pg_url, s3)
    yield c
    c.stop()
