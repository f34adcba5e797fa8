"""A planned stop (SIGTERM, maintenance) is said as such: each device reports `stopped` with the
reason, so the stream raises nothing (stream/agents/device_health_state.py)."""

from __future__ import annotations

from pathlib import Path

from contract import decode
from contract.events import DeviceState, DeviceStatus
from edge.agent import Agent
from edge.config import parse_config
from edge.status import PLANNED_STOP, stopped_statuses
from tests.unit.test_edge_config import site


def test_every_device_reports_stopped_with_the_reason(tmp_path: Path) -> None:
    cfg = parse_config(site(tmp_path, {"id": "wb-1", "port": "/dev/null-x"}))
    agent = Agent(cfg)
    agent.request_stop("planned stop (SIGTERM)")
    assert agent.stop.is_set() and agent.stop_reason == "planned stop (SIGTERM)"
    items = stopped_statuses(agent.devices, agent.outbox, agent.site_id, agent.stop_reason)
    assert [device for device, _, _ in items] == ["wb-1"]
    _, topic, build = items[0]
    status = decode(build("wb-1:1:7", 7), DeviceStatus)
    assert isinstance(status, DeviceStatus)
    assert topic.endswith("/wb-1/device_status")
    assert status.state is DeviceState.STOPPED and status.last_error == "planned stop (SIGTERM)"
    agent.outbox.close()


def test_the_default_reason_is_a_plain_planned_stop(tmp_path: Path) -> None:
    cfg = parse_config(site(tmp_path, {"id": "wb-1", "port": "/dev/null-x"}))
    agent = Agent(cfg)
    agent.request_stop()
    assert agent.stop_reason == PLANNED_STOP == "planned stop"
    agent.outbox.close()
