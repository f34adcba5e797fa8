"""Transport analysis against the real Kafka and InfluxDB: a known track, with duplicates, gives
exactly its alerts (each once) and its sealed-transport km."""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from contract.events import TruckTelemetry
from tests.integration.workerkit import (
    assert_alerts_once,
    produce,
    raised,
    read_alerts,
    start_worker,
    stop,
    wait_until,
)
from wastestream.foundation.influxql import influxql
from wastestream.foundation.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


# ------------------------------------------------------------------------------- the track

SITE_LAT, SITE_LON = 24.392, 109.399  # inside xn-liubei (wastestream/foundation/cities/liuzhou/rules.yaml)
STEP_DEG = 0.0018  # ~200 m north per 10 s report


def track(run: str, base: datetime) -> list[TruckTelemetry]:
    """Drive north to the disposal site: an uncovered stretch, a dump on the way, the legal dump."""
    dev, plate = f"ta-{run}", f"TA{run}"
    out: list[TruckTelemetry] = []
    state = dict(lat=SITE_LAT - 30 * STEP_DEG, speed_kmh=72.0, lid_closed=True, bed_raised=False,
                 load_kg=15000.0)

    def report(dt: float, **kw: Any) -> None:
        state.update(kw)
        out.append(TruckTelemetry(
            msg_id=f"{dev}:1:{len(out) + 1}", device_id=dev, site_id=f"fleet-{run}",
            ts=base + timedelta(seconds=dt), plate=plate, lat=state["lat"], lon=SITE_LON,
            speed_kmh=state["speed_kmh"], lid_closed=state["lid_closed"], bed_raised=state["bed_raised"],
            load_kg=state["load_kg"], ignition=True))

    t = 0.0
    for i in range(12):  # 0..110 s; lid open from report 3 to report 12 (90 s): uncovered
        report(t, lid_closed=not (3 <= i <= 11))
        state["lat"] += STEP_DEG
        t += 10
    report(t, lid_closed=True)  # 120 s
    state["lat"] += STEP_DEG
    t += 10
    report(t, speed_kmh=0.0)  # stops outside: dump 6 t
    report(t + 5, bed_raised=True)
    report(t + 10, load_kg=12000.0)
    report(t + 15, load_kg=9000.0)
    report(t + 20, bed_raised=False)
    report(t + 30, speed_kmh=72.0)
    t += 30
    while state["lat"] < SITE_LAT - 1e-9:
        state["lat"] = min(SITE_LAT, state["lat"] + STEP_DEG)
        t += 10
        report(t)
    report(t + 10, speed_kmh=0.0)  # inside the site: the legal dump, and the manifest arrival
    report(t + 15, bed_raised=True)
    report(t + 20, load_kg=4000.0)
    report(t + 25, load_kg=20.0)
    report(t + 30, bed_raised=False)
    report(t + 40)
    return out


def expected_km(reports: Sequence[TruckTelemetry]) -> tuple[float, float]:
    """Loaded and sealed km, computed independently: all moves are due north (1° = R·π/180 m)."""
    loaded = sealed = 0.0
    for a, b in itertools.pairwise(reports):
        d = abs(b.lat - a.lat) * 6_371_008.8 * math.pi / 180 / 1000
        if a.load_kg > 1000:
            loaded += d
            sealed += d if a.lid_closed else 0.0
    return loaded, sealed


def test_track_gives_exactly_its_alerts_and_sealed_km(settings: Settings, run_id: str, tmp_path: Path
                                                      ) -> None:
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    if base.astimezone(ZoneInfo("Asia/Shanghai")).hour == 23:
        base -= timedelta(hours=1)  # keep the track inside one Beijing day
    reports = track(run_id, base)
    with_dups = reports[:20] + reports[::5] + reports[20:] + reports[12:18]
    asyncio.run(produce(settings, with_dups))
    log = tmp_path / "worker.log"
    proc = start_worker(settings, log)
    dev = f"ta-{run_id}"
    want_kinds = {"illegal_dumping", "uncovered_transport", "manifest_mismatch"}
    try:
        def alerts_in() -> list[dict[str, Any]] | None:
            got = asyncio.run(read_alerts(settings, lambda a: a["device_id"] == dev))
            mine = [a for a in got if a["alert_id"] in raised(log)]
            return got if {a["kind"] for a in mine} >= want_kinds else None

        wait_until(alerts_in, 80, proc, log, "alerts")

        loaded, sealed = expected_km(reports)

        def daily() -> dict[str, Any] | None:
            rows = influxql(settings, f"SELECT * FROM transport_daily WHERE device = '{dev}'")
            positions = influxql(settings, f"SELECT count(lat) FROM truck_position WHERE device = '{dev}'")
            done = rows and positions and positions[0]["count"] == len(reports) \
                and abs(rows[0]["loaded_km"] - loaded) < 1e-6
            return {"daily": rows, "positions": positions} if done else None

        got = wait_until(daily, 30, proc, log, "transport_daily")
        time.sleep(3)  # nothing more arrives
        alerts = asyncio.run(read_alerts(settings, lambda a: a["device_id"] == dev))
    finally:
        stop(proc)
    by_kind = assert_alerts_once(alerts, want_kinds, log)
    dump = by_kind["illegal_dumping"]
    assert dump["severity"] == "critical" and f"{dev}:1:15" in dump["evidence"]  # the bed-raise report
    assert (dump["lat"], dump["lon"]) == (reports[14].lat, reports[14].lon)
    assert by_kind["uncovered_transport"]["evidence"][0] == f"{dev}:1:4"
    mismatch = by_kind["manifest_mismatch"]["summary"]
    assert "with 15000 kg" in mismatch and "with 9000 kg (40.0 % less" in mismatch
    [row] = got["daily"]
    assert row["loaded_km"] == pytest.approx(loaded, abs=1e-6)
    assert row["sealed_km"] == pytest.approx(sealed, abs=1e-6)
    assert row["sealed_pct"] == pytest.approx(100 * sealed / loaded)
    assert sealed < loaded
    local_midnight = base.astimezone(ZoneInfo("Asia/Shanghai")).replace(hour=0, minute=0, second=0)
    assert row["time"] == int(local_midnight.timestamp()) * 10**9
