"""The alert service's per-record path (issue 11, finding 1): ANY exception for one ws.alerts record
becomes a dead-letter record with its reason, and the next record is handled as usual."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from contract import encode
from contract.events import Severity
from stream.alerting.config import parse_config
from stream.alerting.make import make_alert
from stream.alerting.service import AlertService
from wastestream.foundation.settings import Settings

POISON = b'{"msg_id":"poison-1","type":' + b"[" * 1000 + b"]" * 1000 + b"}"
"""2 KB: msgspec raised RecursionError looking for the tag (1,000 nested arrays)."""


class Producer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def send_and_wait(self, topic: str, value: bytes) -> None:
        self.sent.append((topic, json.loads(value)))


def alert(key: str) -> Any:
    return make_alert("illegal_dumping", Severity.CRITICAL, site_id="s1", device_id="t1", subject=f"桂B{key}",
                      summary="dump", evidence=["m1"], ts=datetime(2025, 3, 1, tzinfo=UTC), dedup_key=key)


@pytest.fixture
def service(tmp_path: Path) -> AlertService:
    config = parse_config({"api": {"port": 0, "token": {"value": "t"}}})
    svc = AlertService(config, Settings(run_dir=tmp_path), default_cooldown_s=0, token="t",
                       db_path=tmp_path / "alerts.db", channels={})
    svc._producer = Producer()  # type: ignore[assignment]
    return svc


def test_poison_then_valid(service: AlertService) -> None:
    good = alert("1")
    asyncio.run(service._handle_record(POISON, "ws.alerts"))
    asyncio.run(service._handle_record(encode(good), "ws.alerts"))
    assert [a["alert_id"] for a in service.store.find()] == [good.alert_id]
    [(topic, record)] = service._producer.sent  # type: ignore[union-attr]
    assert topic == "ws.deadletter" and record["topic"] == "ws.alerts"
    assert "poison-1" in record["payload"] and record["reason"].startswith("alert service: ")
    assert service.stats.rejected == 1 and service.stats.consumed == 1


def test_any_exception_of_one_record_is_dead_lettered(service: AlertService,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Not only decode errors: here the store fails on one alert (a bug, a value SQLite refuses)."""
    bad, good = alert("bad"), alert("good")
    ingest = service.store.ingest

    def failing(a: Any, *args: Any) -> Any:
        if a.alert_id == bad.alert_id:
            raise sqlite3.InterfaceError("Error binding parameter 3: type 'dict' is not supported")
        return ingest(a, *args)

    monkeypatch.setattr(service.store, "ingest", failing)
    for a in (bad, good):
        asyncio.run(service._handle_record(encode(a), "ws.alerts"))
    assert [a["alert_id"] for a in service.store.find()] == [good.alert_id]
    [(_, record)] = service._producer.sent  # type: ignore[union-attr]
    assert record["reason"] == ("alert service: InterfaceError: Error binding parameter 3: "
                                "type 'dict' is not supported")
    assert json.loads(record["payload"])["alert_id"] == bad.alert_id
