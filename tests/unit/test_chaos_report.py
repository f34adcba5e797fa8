"""The chaos report's count of edge re-sends, from the agents' own records (WS_EDGE_RESENDS_FILE)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.config import MqttConfig
from edge.mqtt_session import MqttSession
from edge.outbox import Outbox
from wastestream.chaos import RESENDS_FILE, edge_resends


def test_edge_resends_are_read_from_the_agents_records(tmp_path: Path) -> None:
    (tmp_path / RESENDS_FILE).write_text(
        '{"site": "c-food", "ts": "2026-12-03T13:00:01+00:00", "count": 2}\n'
        '{"site": "c-food", "ts": "2026-12-03T13:00:41+00:00", "count": 1}\n'
        '{"site": "c-riv'  # torn by a kill -9: skipped
    )
    found = edge_resends(tmp_path)
    assert found == {"edge-c-food": [("2026-12-03T13:00:01+00:00", 2), ("2026-12-03T13:00:41+00:00", 1)]}
    assert edge_resends(tmp_path / "nothing") == {}


def test_a_session_records_its_resends_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / RESENDS_FILE
    monkeypatch.setenv("WS_EDGE_RESENDS_FILE", str(path))
    session = MqttSession(MqttConfig(), "c-food", Outbox(tmp_path / "outbox.db"), status_kind="weighbridge")
    session._record_resends(3)
    session._record_resends(1)
    assert [n for _, n in edge_resends(tmp_path)["edge-c-food"]] == [3, 1]
