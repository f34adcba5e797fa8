"""Electronic manifests against the real Kafka and InfluxDB: matched, mismatched and missing
(a short event-time timeout from a test rules file), each alert once, one point per manifest."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from contract.events import Direction, WasteCategory, Weighing
from stream.rules import DEFAULT_RULES
from tests.integration.test_stream_tonnage_analytics import skip_history
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

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]
TIMEOUT_S = 60  # generous: a cold worker can take ~30 s to get all partitions; see the note on watermarks


def ticket(run: str, n: int, plate: str, direction: Direction, net: float, ts: datetime) -> Weighing:
    where = "o" if direction is Direction.OUTBOUND else "d"
    return Weighing(msg_id=f"wb{where}-{run}:1:{n}", device_id=f"wb{where}-{run}",
                    site_id=f"{where}site-{run}", ts=ts, ticket_id=f"T{n}", plate=plate, direction=direction,
                    gross_kg=net + 10000.0,
                    tare_kg=10000.0, net_kg=net, category=WasteCategory.CONSTRUCTION, origin="district-1")


def test_manifests_matched_mismatched_missing(settings: Settings, run_id: str,
                                              tmp_path: Path) -> None:
    skip_history(settings, "weighing", "deposit", "bin_level", "truck_telemetry")  # a bench's backlog is long
    rules = yaml.safe_load(DEFAULT_RULES.read_text(encoding="utf-8"))
    rules["manifest"] = {"tolerance_pct": 5, "timeout_s": TIMEOUT_S}
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump(rules, allow_unicode=True), encoding="utf-8")
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=15)
    ok, short, gone = f"OK{run_id}", f"SH{run_id}", f"GO{run_id}"
    out = [ticket(run_id, 1, ok, Direction.OUTBOUND, 15000, base),
           ticket(run_id, 2, short, Direction.OUTBOUND, 15000, base + timedelta(seconds=1)),
           ticket(run_id, 3, gone, Direction.OUTBOUND, 15000, base + timedelta(seconds=2))]
    arrivals = [ticket(run_id, 1, ok, Direction.INBOUND, 14800, base + timedelta(seconds=8)),
                ticket(run_id, 2, short, Direction.INBOUND, 12000, base + timedelta(seconds=9))]
    asyncio.run(produce(settings, [*out, *out[:2], *arrivals, arrivals[0]]))  # with duplicates
    log = tmp_path / "worker.log"
    proc = start_worker(settings, log, WS_RULES=str(rules_file))
    want_kinds = {"manifest_mismatch", "manifest_missing"}
    mine = (f"osite-{run_id}", f"dsite-{run_id}")

    def points() -> list[dict[str, Any]] | None:
        rows = influxql(settings, f"SELECT * FROM manifest WHERE origin = 'osite-{run_id}'")
        return rows if len(rows) == 3 else None

    try:
        rows = wait_until(points, 150, proc, log, "manifest points")

        def alerts_in() -> list[dict[str, Any]] | None:
            got = asyncio.run(read_alerts(settings, lambda a: a["site_id"] in mine))
            ours = [a for a in got if a["alert_id"] in raised(log)]
            return got if {a["kind"] for a in ours} >= want_kinds else None

        wait_until(alerts_in, 20, proc, log, "alerts")
        time.sleep(3)
        alerts = asyncio.run(read_alerts(settings, lambda a: a["site_id"] in mine))
        rows = influxql(settings, f"SELECT * FROM manifest WHERE origin = 'osite-{run_id}'")
    finally:
        stop(proc)
    by_kind = assert_alerts_once(alerts, want_kinds, log)
    assert by_kind["manifest_mismatch"]["subject"] == short
    assert by_kind["manifest_mismatch"]["evidence"] == [f"wbo-{run_id}:1:2", f"wbd-{run_id}:1:2"]
    assert by_kind["manifest_missing"]["subject"] == gone
    assert by_kind["manifest_missing"]["severity"] == "critical"
    got = {r["plate"]: r for r in rows}
    assert (got[ok]["status"], got[ok]["left_kg"], got[ok]["arrived_kg"]) == ("matched", 15000, 14800)
    assert got[ok]["destination"] == f"dsite-{run_id}" and abs(got[ok]["diff_pct"] - 4 / 3) < 1e-9
    assert (got[short]["status"], got[short]["arrived_kg"]) == ("mismatch", 12000)
    assert got[short]["diff_pct"] == 20.0
    assert got[gone]["status"] == "missing" and got[gone]["arrived_kg"] is None
    assert got[gone]["time"] == int((base + timedelta(seconds=2)).timestamp()) * 10**9
