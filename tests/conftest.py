"""Shared fixtures: the real local services (started once per session) and isolated names per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from wastestream.foundation.settings import Settings, load_settings
from wastestream.pipeline import services


@pytest.fixture(scope="session")
def live_services() -> Iterator[Settings]:
    """Mosquitto, Kafka and InfluxDB on loopback via deploy/local (idempotent: already up is fine)."""
    services("up")
    yield load_settings()


@pytest.fixture
def unique() -> str:
    """A short unique suffix so a test's Kafka group, Faust app and InfluxDB database are its own."""
    return uuid.uuid4().hex[:8]
