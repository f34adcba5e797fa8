"""The report from real InfluxDB data, rendered by headless Chromium to a PNG that is not blank.

- `test_report_from_written_points`: points we write ourselves (exact expected indicators).
- `test_report_from_city_run`: the shared `city_run` fixture (the real pipeline end to end).
"""

from __future__ import annotations

import re
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from contract.events import Severity
from stream.alerting.make import make_alert
from stream.alerting.store import AlertStore
from wastestream.foundation.settings import Settings
from wastestream.report import build_report
from wastestream.report.screenshot import ScreenshotError, ensure_chromium, screenshot

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


def _post(settings: Settings, path: str, params: dict[str, str], body: bytes = b"") -> None:
    url = f"{settings.influx_url}{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(urllib.request.Request(url, data=body, method="POST"), timeout=60) as resp:
        resp.read()


def check_png(png: Path) -> None:
    """A real page: big enough, the requested size, and mostly-not-blank (ink and several colours)."""
    from PIL import Image

    assert png.stat().st_size > 30_000, f"{png} is only {png.stat().st_size} bytes"
    with Image.open(png) as im:
        assert im.size == (1280, 2400)
        small = im.convert("RGB").resize((320, 600))
        pixels = list(small.getdata())
    ink = sum(1 for p in pixels if sum(p) < 600) / len(pixels)
    colours = len(set(pixels))
    assert ink > 0.02, f"page looks blank ({ink:.3%} non-white)"
    assert colours > 50, f"only {colours} colours: no charts or badges rendered?"


def render(html: Path) -> Path:
    try:
        ensure_chromium()
    except ScreenshotError as exc:
        pytest.skip(f"headless Chromium unavailable and cannot be installed here: {exc}")
    return screenshot(html, html.with_suffix(".png"))


RULES = {
    "city": "liuzhou", "timezone": "Asia/Shanghai",
    "facilities": [
        {"id": "rp-inc", "kind": "incineration", "capacity_t_per_day": 100},
        {"id": "rp-lf", "kind": "landfill", "capacity_t_per_day": 100, "zero_landfill_raw": True},
        {"id": "rp-food", "kind": "food_waste", "capacity_t_per_day": 50},
        {"id": "rp-brick", "kind": "construction_recycling", "capacity_t_per_day": 500},
        {"id": "rp-xn", "kind": "disposal_site", "capacity_t_per_day": 500},
    ],
    "communities": [{"id": "rp-a", "households": 10}, {"id": "rp-b", "households": 10}],
}


def test_report_from_written_points(live_services: Settings, unique: str, tmp_path: Path) -> None:
    import dataclasses

    settings = dataclasses.replace(live_services, influx_db=f"ws_report_{unique}")
    _post(settings, "/query", {"q": f'CREATE DATABASE "{settings.influx_db}"'})
    try:
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
        t0 = int(start.timestamp()) * 10**9
        lines, n = [], 0

        def ticket(site: str, cat: str, kg: float) -> None:
            nonlocal n
            n += 1
            lines.append(f'weighing,category={cat},device=wb-{site},origin=o1,site={site} '
                         f'net_kg={kg},msg_id="m{n}",plate="桂B{n:05d}" {t0 + n * 10**9}')

        for _ in range(4):
            ticket("rp-inc", "residual", 10_000)   # 40 t incinerated
        ticket("rp-lf", "residual", 5_000)          # 5 t raw household waste landfilled
        ticket("rp-food", "kitchen", 15_000)        # 15 t recovered
        ticket("rp-brick", "construction", 20_000)  # 20 t C&D recycled
        ticket("rp-xn", "construction", 60_000)     # 60 t C&D to a disposal site
        for i, (community, verdict, hh) in enumerate(
                [("rp-a", "correct", "h1"), ("rp-a", "correct", "h2"), ("rp-a", "incorrect", "h3"),
                 ("rp-b", "correct", "h4"), ("rp-b", "unchecked", "h4")]):
            lines.append(f"deposit,bin=kitchen,community={community},device=ss-{community},site={community},"
                         f'verdict={verdict} kg=1.5,household="{hh}",msg_id="d{i}" {t0 + (100 + i) * 10**9}')
        day = int(datetime.fromtimestamp(start.timestamp(), UTC).timestamp()) * 10**9
        lines.append(f"transport_daily,device=trk-1,site=fleet loaded_km=10.0,sealed_km=8.0 {day}")
        body = "\n".join(lines).encode()
        _post(settings, "/write", {"db": settings.influx_db, "precision": "ns"}, body)

        rules = tmp_path / "rules.yaml"
        rules.write_text(yaml.safe_dump(RULES, allow_unicode=True), encoding="utf-8")
        store = AlertStore(tmp_path / "alerts.db")
        dump = make_alert("raw_waste_landfilled", Severity.CRITICAL, site_id="rp-lf", device_id="wb-rp-lf",
                          subject="桂B00005", summary="5 t residual at a zero-landfill site",
                          evidence=["wb-rp-lf:1:5"], ts=start + timedelta(minutes=5), dedup_key=unique)
        store.ingest(dump, cooldown_s=0, channels=[])
        store.transition(dump.alert_id, "close", "李科长", "site warned")
        store.close()

        out = build_report(settings, start, start + timedelta(hours=3), tmp_path / "report.html",
                           rules_path=rules, alerts_db=tmp_path / "alerts.db")
        html = out.read_text(encoding="utf-8")
        # recycling = 15 / (40 + 5 + 15) = 25 %; C&D = 20 / 80 = 25 %; accuracy 3 / 4 = 75 %;
        # participation 4 households / 20 = 20 %; sealed 8 / 10 = 80 %; raw landfilled 5 t; 办结率 100 %
        assert "recovered_t=15.0, msw_t=60.0" in html
        assert "recycled_t=20.0, construction_t=80.0" in html
        assert "correct=3, checked=4, unchecked=1" in html
        assert "households_active=4, households_registered=20" in html
        assert "sealed_km=8.0, loaded_km=10.0" in html
        assert "raw_tickets=1" in html and "原生垃圾填埋" in html and "李科长" in html
        assert "closed=1, raised=1" in html
        check_png(render(out))
    finally:
        _post(settings, "/query", {"q": f'DROP DATABASE "{settings.influx_db}"'})


def test_report_from_city_run(city_run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings, run_dir, ledger, (start_ns, end_ns) = city_run
    start = datetime.fromtimestamp(start_ns / 1e9, UTC)
    end = datetime.fromtimestamp(end_ns / 1e9, UTC)
    rules = run_dir / "rules.yaml"
    out = build_report(settings, start, end, tmp_path / "city_report.html", rules_path=rules,
                       alerts_db=run_dir / "alerts.db")
    html = out.read_text(encoding="utf-8")
    sites = {f["id"] for f in yaml.safe_load(rules.read_text(encoding="utf-8"))["facilities"]}
    weighed = {r["site_id"] for r in ledger if r.get("kind") == "weighing" and r.get("expect_ticket", True)}
    assert weighed, "the city run weighed nothing"
    for site in weighed & sites:
        # by name when the city table has one (the id as small print under it), else by id
        assert f"<b>{site}</b>" in html or f"<br><small>{site}</small>" in html, f"{site} not in the table"
    assert not re.search(r"\.txt:L|\d{3}_[0-9a-f]{16}", html), "a seed file name reached the report"
    # a tonnage section per judged day and per partial day; one may be empty (a run just after the
    # local midnight weighs nothing on the whole day before), not all of them
    assert html.count("本期无过磅数据") < html.count("设施吨位"), "no tonnage section shows the run's tickets"
    assert "五、告警与执法记录" in html and "本期无告警" not in html  # the fixture waits for alerts
    png = render(out)
    check_png(png)
