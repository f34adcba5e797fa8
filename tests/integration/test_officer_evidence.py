"""The alert page's evidence for weighbridge and sorting alerts, read from the real InfluxDB: the
ticket the alert names by msg_id (not merely the nearest one), its flags, a station's recent
accuracy by verdict and its bins' last levels, and the raw points of the alert's evidence."""

from __future__ import annotations

import dataclasses
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from contract.events import Alert, Severity
from stream.alerting.make import make_alert
from stream.alerting.officer.evidence import gather, influx_query
from stream.alerting.store import AlertStore
from stream.rules import load_rules
from wastestream.foundation.settings import Settings

pytestmark = pytest.mark.integration


def write(settings: Settings, lines: list[str]) -> None:
    query = urllib.parse.urlencode({"db": settings.influx_db, "precision": "ns"})
    create = urllib.parse.urlencode({"q": f'CREATE DATABASE "{settings.influx_db}"'})
    urllib.request.urlopen(urllib.request.Request(f"{settings.influx_url}/query?{create}", method="POST"),
                           timeout=30).read()
    request = urllib.request.Request(f"{settings.influx_url}/write?{query}", data="\n".join(lines).encode(),
                                     method="POST")
    urllib.request.urlopen(request, timeout=30).read()


def stored(tmp_path: Path, alert: Alert) -> dict[str, Any]:
    store = AlertStore(tmp_path / "alerts.db")
    store.ingest(alert, 0, [])
    got = store.get(alert.alert_id)
    store.close()
    return got


def test_weighbridge_and_sorting_evidence(settings: Settings, run_id: str, tmp_path: Path) -> None:
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    ns = int(t0.timestamp()) * 10**9
    wb, ss = f"wb-{run_id}", f"ss-{run_id}"
    lines = []
    for i, (plate, flags) in enumerate((("桂B10001", ""), ("桂B10002", "tare_deviation"), ("桂B10003", ""))):
        lines.append(f'weighing,site=s1,device={wb},category=residual,origin=x net_kg={8000 + i}.0,'
                     f'gross_kg={20000 + i}.0,tare_kg=12000.0,plate="{plate}",ticket_id="T{i}",'
                     f'msg_id="{wb}:1:{i + 1}",direction="in",stable=true,flags="{flags}" '
                     f"{ns + i * 60 * 10**9}")
    for i, verdict in enumerate(["correct"] * 7 + ["incorrect"] * 3 + ["unchecked"] * 2):
        lines.append(f'deposit,site=c1,community=c1,device={ss},bin=kitchen,verdict={verdict} kg=1.0,'
                     f'msg_id="{ss}:1:{i + 1}" {ns + i * 10**9}')
    lines.append(f'bin_level,site=c1,community=c1,device={ss},bin=kitchen fill_pct=93.5,msg_id="{ss}:1:99" '
                 f"{ns + 30 * 10**9}")
    write(settings, lines)
    query, rules = influx_query(settings), load_rules()

    # the alert names the second ticket, though the first is nearer to the alert's time
    tare = make_alert("weighbridge_tare_deviation", Severity.WARNING, site_id="s1", device_id=wb,
                      subject="桂B10002", summary="tare off", evidence=(f"{wb}:1:2",), ts=t0,
                      dedup_key=run_id)
    ev = gather(stored(tmp_path, tare), rules, query)
    assert ev.group == "weighbridge" and ev.problems == []
    assert ev.ticket is not None and ev.ticket["plate"] == "桂B10002"
    assert ev.ticket["flags"] == "tare_deviation"
    assert [r["msg_id"] for r in ev.raw] == [f"{wb}:1:2"]

    full = make_alert("bin_full", Severity.WARNING, site_id="c1", device_id=ss, subject=f"{ss}/kitchen",
                      summary="full", evidence=(f"{ss}:1:99",), ts=t0 + timedelta(seconds=31),
                      dedup_key=run_id + "b")
    ev = gather(stored(tmp_path, full), rules, query)
    assert ev.group == "sorting" and ev.verdicts == {"correct": 7, "incorrect": 3, "unchecked": 2}
    assert ev.accuracy == pytest.approx(0.7)  # unchecked drops are not judged
    assert [(b["bin"], b["fill_pct"]) for b in ev.bins] == [("kitchen", 93.5)]
    assert [r["measurement"] for r in ev.raw] == ["bin_level"]


def test_influxdb_down_is_said_not_raised(settings: Settings, tmp_path: Path) -> None:
    down = dataclasses.replace(settings, influx_url="http://127.0.0.1:9")
    a = make_alert("illegal_dumping", Severity.CRITICAL, site_id="fleet-x", device_id="t1", subject="桂B1",
                   summary="dump", evidence=("t1:1:1",), ts=datetime.now(UTC), dedup_key="down", lat=24.3,
                   lon=109.4)
    ev = gather(stored(tmp_path, a), load_rules(), influx_query(down))
    assert ev.problems and "unavailable" in ev.problems[0]
