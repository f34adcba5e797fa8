"""`wastestream edge probe --jt808 :PORT` as an installer runs it, with the terminal twin dialling in."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import UTC, datetime

from edge.devices.jt808.profile import load_profile
from firmware_sim.twins.base import free_port
from firmware_sim.twins.jt808 import Signals, TerminalSim, location, wait_listening

from .test_jt808_codec import LOC_2013_WIRE


def test_the_probe_prints_the_terminals_that_connect() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "wastestream.cli", "edge", "probe", "--jt808", f"127.0.0.1:{port}",
         "--seconds", "6"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    async def terminals() -> tuple[bool, int]:
        await wait_listening("127.0.0.1", port, timeout=20)
        new = TerminalSim("13912345678", "桂B12345", "127.0.0.1", port, is_2019=True)
        assert await new.connect()
        loc = location(load_profile("ext-signal"), ts=datetime(2026, 12, 7, 12, 30, tzinfo=UTC), lat=24.326,
                       lon=109.428, speed_kmh=12.6, heading=125, signals=Signals(True, False, 0.5, 7000))
        acked = await new.report(loc)
        await new.close()
        old = TerminalSim("13900000001", "桂B00001", "127.0.0.1", port, auth_code="from-the-real-platform")
        assert await old.connect()  # no registration: its code from the real platform is taken
        assert old._writer is not None
        old._writer.write(LOC_2013_WIRE[:-2] + b"\x00\x7e")  # a wrong check code
        await old._writer.drain()
        await asyncio.sleep(0.3)
        await old.close()
        return acked, len(new.unacked)

    acked, kept = asyncio.run(terminals())
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out
    assert not acked and kept == 1  # answered "fail": the terminal keeps the point for the platform
    assert "13912345678: registered" in out and "plate '桂B12345'" in out and "model 'ws-twin'" in out
    assert "13912345678: authenticated" in out and "IMEI 860000000000000" in out
    assert "13912345678: location 2026-12-07T12:30:00+00:00 24.326000,109.428000 12.6 km/h 125°" in out
    assert "load=half cover=closed bed=down mileage=0.0km signal=25 satellites=12" in out
    assert "13900000001: authenticated with code 'from-the-real-platform'" in out
    assert "discarded (check code mismatch" in out
    assert "probe: 2 terminal(s)" in out and "1 location(s); discarded: {'check code mismatch': 1}" in out
