"""An edge composes `last_error` from exception texts; the contract refuses control characters in
text (issue 11, finding 9), so the edge makes them printable: a newline in a driver's error must
not cost the device_status that reports the device offline."""

from __future__ import annotations

from pathlib import Path

from contract import decode
from contract.events import DeviceState, DeviceStatus
from edge.agent import Agent
from edge.config import parse_config
from edge.devices.weighbridge.port import WeighbridgePort
from edge.devices.weighbridge.workflow import WeighbridgeDevice
from tests.unit.test_edge_config import site

ERROR = "SerialException: read failed\n\x1b[31m[Errno 5] \u202eInput/output error"


def weighbridge_agent(tmp_path: Path) -> tuple[Agent, WeighbridgePort]:
    cfg = parse_config(site(tmp_path, {"id": "wb-1", "port": "/dev/null-x"}))
    agent, [device] = Agent(cfg), cfg.devices
    assert isinstance(device, WeighbridgeDevice)
    return agent, WeighbridgePort(device, agent.context(device))


def statuses(agent: Agent) -> list[DeviceStatus]:
    out = []
    for i, (_, _, build) in enumerate(agent.status_batch(heartbeat=True)):
        status = decode(build(f"{agent.session.status_device}:1:{i}", i), DeviceStatus)
        assert isinstance(status, DeviceStatus)
        out.append(status)
    return out


def test_a_driver_error_with_control_characters_still_gives_a_valid_status(tmp_path: Path) -> None:
    agent, _ = weighbridge_agent(tmp_path)
    agent.note_error("wb-1", ERROR)
    agent.health["wb-1"].state = DeviceState.OFFLINE
    errors = [s.last_error for s in statuses(agent)]
    assert errors and all(e and "\n" not in e and "\x1b" not in e and "\u202e" not in e for e in errors)
    assert any(e and e.startswith("SerialException: read failed\\n\\x1b[31m") for e in errors)


def test_the_weighbridge_ports_own_error_report_is_valid(tmp_path: Path) -> None:
    agent, port = weighbridge_agent(tmp_path)
    port._report(DeviceState.OFFLINE, ERROR)
    [entry] = agent.outbox.pending()
    status = decode(entry.payload, DeviceStatus)
    assert isinstance(status, DeviceStatus) and status.state == DeviceState.OFFLINE
    assert status.last_error and status.last_error.startswith("SerialException: read failed\\n")
