"""Truck terminal against the simulator: NMEA on a real pty, I/O over Modbus TCP on loopback.

Needs no external service, only a pty and a free loopback port.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path

import msgspec
import pytest
from shapely.geometry import LineString, Point, Polygon

from contract.events import Envelope, TruckTelemetry
from edge.devices.truck.terminal import TerminalStats, TruckTerminalConfig, run_truck_terminal
from firmware_sim.scenario import DisposalSiteSpec, TruckSpec
from firmware_sim.truck import Incident, TruckLedger, run_truck_sim

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

ROUTE_TOLERANCE_DEG = 0.0003  # ~30 m: interpolation plus the encoder's 4-decimal minutes

# Liuzhou's trk-z8801 and the Liubei disposal site (foundation/cities/liuzhou/scenario.yaml), copied so
# that edits to the shared city do not change this test.
SPEC = msgspec.convert({
    "id": "trk-z8801", "plate": "桂BZ8801", "origin": "liubei", "disposal_site": "xn-liubei",
    "tare_kg": 15500, "load_kg": 14500,
    "route": [[24.3660, 109.4050], [24.3750, 109.4010], [24.3850, 109.3990], [24.3920, 109.3990]],
}, TruckSpec)
SITES = [msgspec.convert(s, DisposalSiteSpec) for s in (
    {"id": "xn-luzhai-brick", "name": "鹿寨", "polygon": [
        [24.4790, 109.7330], [24.4790, 109.7420], [24.4720, 109.7420], [24.4720, 109.7330]]},
    {"id": "xn-liubei", "name": "柳北", "polygon": [
        [24.3950, 109.3950], [24.3950, 109.4030], [24.3890, 109.4030], [24.3890, 109.3950]]},
)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def drive(
    tmp_path: Path, spec: TruckSpec, incidents: list[Incident]
) -> tuple[TruckLedger, list[TruckTelemetry], TerminalStats]:
    gps, port = str(tmp_path / "gps-trk"), free_port()
    events: list[TruckTelemetry] = []

    async def emit(event: Envelope) -> None:
        assert isinstance(event, TruckTelemetry)
        events.append(event)

    cfg = TruckTerminalConfig(
        id=spec.id, site_id="lz-liubei", plate=spec.plate, gps_port=gps, io_port=port,
        io_poll_s=0.05, report_interval_s=0.2, load_step_kg=500, fix_stale_s=0.5,
    )
    stop, stats = asyncio.Event(), TerminalStats()
    terminal = asyncio.create_task(run_truck_terminal(cfg, emit, stop, stats=stats))
    # The sim writes 40 sentences a second; give the terminal time to attach before the trip matters.
    ledger = await run_truck_sim(spec, gps_path=gps, io_port=port, seed=7, time_scale=40, incidents=incidents)
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.wait_for(terminal, 5)
    return ledger, events, stats


def test_trip_with_incidents(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="edge.devices.truck.terminal")
    incidents = [
        Incident(kind="dump_outside", at_fraction=0.5, drop_fraction=0.6),
        Incident(kind="bad_checksum", at_s=80, duration_s=8),
        Incident(kind="torn_sentence", at_s=100, duration_s=4),
        Incident(kind="uncovered", at_s=200, duration_s=20),
        Incident(kind="gps_loss", at_s=400, duration_s=15),
    ]
    spec = SPEC
    ledger, events, stats = asyncio.run(drive(tmp_path, spec, incidents))
    sites = {s.id: Polygon([(p.lon, p.lat) for p in s.polygon]) for s in SITES}
    route = LineString([(p.lon, p.lat) for p in spec.route])

    assert len(events) > 50
    assert ledger.bytes_dropped == 0
    # positions follow the route (out and back)
    fixed = [e for e in events if e.gps_fix]
    assert len(fixed) > 40
    for e in fixed:
        assert route.distance(Point(e.lon, e.lat)) < ROUTE_TOLERANCE_DEG, e
    assert all(e.plate == spec.plate and e.device_id == spec.id and e.msg_id == "" for e in events)

    # the legitimate dump: bed raised inside the disposal site's polygon
    at_site = [e for e in events if e.bed_raised and sites[spec.disposal_site].contains(Point(e.lon, e.lat))]
    assert at_site, "no bed-raised report inside the disposal site"
    assert ledger.of_kind("dump") and sites[spec.disposal_site].contains(
        Point(ledger.of_kind("dump")[0].lon, ledger.of_kind("dump")[0].lat))

    # the illegal dump: bed raised outside every disposal polygon, where the ledger says
    outside = [
        e for e in events if e.bed_raised and not any(p.contains(Point(e.lon, e.lat)) for p in sites.values())
    ]
    assert outside, "dump_outside not visible"
    (dump,) = ledger.of_kind("dump_outside")
    assert any(abs(e.lat - dump.lat) < 1e-4 and abs(e.lon - dump.lon) < 1e-4 for e in outside)
    assert dump.load_before_kg is not None and dump.load_after_kg is not None
    assert dump.load_after_kg < dump.load_before_kg * 0.5
    assert any(e.load_kg < 0.5 * spec.load_kg for e in outside)

    # uncovered: lid open while moving
    assert any(not e.lid_closed and e.speed_kmh > 10 for e in events)
    # gps loss: reports go on, flagged without a fix, at the last known position
    lost = [e for e in events if not e.gps_fix]
    assert lost and all(route.distance(Point(e.lon, e.lat)) < ROUTE_TOLERANCE_DEG for e in lost)

    # every corrupted sentence was rejected with its reason, logged, and survived
    (bad,) = ledger.of_kind("bad_checksum")
    (torn,) = ledger.of_kind("torn_sentence")
    assert stats.nmea["error:bad checksum"] == bad.sentences == 8
    assert stats.nmea["error:torn sentence"] == torn.sentences == 4
    logged = [r.getMessage() for r in caplog.records if "NMEA rejected" in r.getMessage()]
    assert sum("bad checksum" in m for m in logged) == 8
    assert sum("torn sentence" in m for m in logged) == 4
    assert stats.nmea["fix:RMC"] >= len(ledger.points) - 12 - 80  # minus corrupted and start-up
