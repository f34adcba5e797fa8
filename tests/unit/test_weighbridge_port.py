"""The transport: a missing port is retried with a device_status, bytes become tickets."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from contract import DeviceStatus, Weighing, decode
from edge.agent import Agent
from edge.config import parse_config
from edge.devices.weighbridge.anpr import PlateRead
from edge.devices.weighbridge.port import WeighbridgeDriver, WeighbridgePort
from edge.devices.weighbridge.workflow import WeighbridgeDevice
from edge.outbox import Outbox
from firmware_sim.weighbridge import encode_toledo


def make(tmp_path: Path) -> tuple[WeighbridgePort, Outbox]:
    cfg = parse_config(
        {
            "site_id": "s1",
            "outbox": {"path": str(tmp_path / "o.db")},
            "vehicles": [{"plate": "桂B12345", "tare_kg": 12000, "rated_gross_kg": 31000}],
            "devices": [{"id": "wb-1", "port": str(tmp_path / "missing"), "anpr_port": None}],
        }
    )
    agent, wb = Agent(cfg), cfg.devices[0]
    assert isinstance(wb, WeighbridgeDevice)
    return WeighbridgePort(wb, agent.context(wb)), agent.outbox


def test_missing_port_reports_offline_and_retries(tmp_path: Path) -> None:
    port, outbox = make(tmp_path)
    stop = threading.Event()
    th = threading.Thread(target=port.run, args=(stop,))
    th.start()
    th.join(0.5)
    stop.set()
    th.join(5)
    assert not th.is_alive()
    [row] = outbox.pending()
    status = decode(row.payload)
    assert isinstance(status, DeviceStatus) and status.state.value == "offline"
    assert status.last_error and "missing" in status.last_error
    assert row.topic == "ws/v1/s1/weighbridge/wb-1/device_status"


def test_bytes_to_ticket_in_outbox(tmp_path: Path) -> None:
    port, outbox = make(tmp_path)
    port.workflow.on_plate(0.0, "桂B12345")
    t = 0.0
    weights = [0] * 3 + [10000, 20000] + [28000] * 15 + [10000] + [0] * 4
    for w in weights:
        t += 0.1
        port.feed(t, encode_toledo(w, division_kg=20)[:9])
        port.feed(t, encode_toledo(w, division_kg=20)[9:] + b"\x00junk")
    [row] = outbox.pending()
    ticket = decode(row.payload)
    assert isinstance(ticket, Weighing) and ticket.net_kg == 16000 and ticket.msg_id == row.msg_id
    assert ticket.ticket_id == f"wb-1-{outbox.epoch}-1" and row.topic == "ws/v1/s1/weighbridge/wb-1/weighing"
    assert port.workflow.frame_errors == len(weights)


def test_a_pushed_plate_is_placed_at_the_cameras_frame_time(tmp_path: Path) -> None:
    """A push that arrives 4 s after the camera saw the truck counts from when it saw it; a camera
    clock an hour off is not trusted (receive time)."""
    port, _ = make(tmp_path)
    now = datetime.now(UTC)
    seen_4s_ago = PlateRead("桂B12345", frame_ts=now - timedelta(seconds=4), source="http")
    clock_off = PlateRead("桂B23456", frame_ts=now - timedelta(hours=1), source="http")
    port.on_plate_read(seen_4s_ago, received=100.0)
    port.on_plate_read(clock_off, received=200.0)
    assert list(port.workflow._plates) == []  # queued until the reading thread takes them
    port.feed(201.0, b"")
    [(t1, p1), (t2, p2)] = list(port.workflow._plates)
    assert p1 == "桂B12345" and 95.5 < t1 < 96.5
    assert (p2, t2) == ("桂B23456", 200.0)


def test_a_camera_port_in_use_is_logged_and_retried_while_the_indicator_is_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        cfg = parse_config({"site_id": "s1", "outbox": {"path": str(tmp_path / "o.db")}, "devices": [
            {"id": "wb-1", "port": str(tmp_path / "missing"),
             "anpr_http": {"host": "127.0.0.1", "port": busy}}]})
        agent, wb = Agent(cfg), cfg.devices[0]
        assert isinstance(wb, WeighbridgeDevice)
        driver = WeighbridgeDriver(wb, agent.context(wb))

        async def main() -> None:
            agent.stop.clear()
            run = asyncio.create_task(driver.run())
            await asyncio.sleep(1.5)
            agent.stop.set()
            agent._threads_stop.set()
            await asyncio.wait_for(run, 10)

        with caplog.at_level(logging.WARNING, logger="edge.weighbridge"):
            asyncio.run(main())
    assert f"wb-1: anpr http: cannot listen on 127.0.0.1:{busy}" in caplog.text
    assert "missing" in caplog.text  # the indicator port was tried meanwhile
