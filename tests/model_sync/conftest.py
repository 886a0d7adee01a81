"""Fixtures for model_sync: one moto S3 server per session, an OSS-dialect adapter in front
of it, fault relays and a hub stand-in; the helpers they share are in tests/support/sync_cli.py."""

from __future__ import annotations

import uuid

import pytest

from tests.support.fake_hub import FakeHub
from tests.support.fault_relay import FaultRelay
from tests.support.oss_adapter import OSSAdapter
from tests.support.s3_server import start_moto


@pytest.fixture(scope="session")
def s3():
    server = start_moto()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def oss(s3):
    adapter = OSSAdapter(s3.client()).start()
    yield adapter
    adapter.stop()


@pytest.fixture
def bucket(s3):
    name = f"t-{uuid.uuid4().hex[:12]}"
    s3.client().create_bucket(Bucket=name)
    return name


@pytest.fixture
def relay_for():
    relays = []

    def make(upstream: str) -> FaultRelay:
        r = FaultRelay(upstream).start()
        relays.append(r)
        return r

    yield make
    for r in relays:
        r.stop()


@pytest.fixture
def hub():
    """A local server speaking the Hugging Face hub's resolve protocol."""
    h = FakeHub().start()
    yield h
    h.stop()
