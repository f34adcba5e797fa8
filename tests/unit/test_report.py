"""The HTML report: sections, inline SVG, no external URLs, alert log with evidence links; whole
days judged, partial days only measured, plan periods respected, citations that name the plans."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from contract.events import Severity
from stream.alerting.make import make_alert
from stream.alerting.store import AlertStore
from wastestream.foundation.settings import Settings
from wastestream.indicators.alerts import from_store
from wastestream.indicators.data import CommunitySorting, PeriodData, Tonnage
from wastestream.report import build
from wastestream.report.svg import Bar, bar_chart

START = datetime(2025, 6, 1, 0, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
END = START + timedelta(days=1)
NOW = START + timedelta(days=1, hours=14, minutes=22)


def fake_period(settings: Settings, start: datetime, end: datetime, **kw: object) -> PeriodData:
    return PeriodData(
        start, end,
        tonnage={("lz-jm-incinerator", "residual"): Tonnage(80_000, 8),
                 ("lz-jm-food", "kitchen"): Tonnage(20_000, 4),
                 ("lz-jm-landfill", "residual"): Tonnage(5_000, 1),
                 ("lzh-brick", "construction"): Tonnage(30_000, 2),
                 ("xx-unknown", "construction"): Tonnage(10_000, 1)},
        peak_load_pct={"lz-jm-incinerator": 14.2},
        sorting={"cz-wuxing": CommunitySorting(correct=90, incorrect=10, unchecked=3, kg=120.5, households=70,
                                               stations={"ss-1", "ss-2"}),
                 "yf-baisha": CommunitySorting(correct=40, incorrect=20, households=30, stations={"ss-3"})},
        loaded_km=20.0, sealed_km=15.0, trucks=2, manifests={"matched": 3, "mismatch": 1})


@pytest.fixture
def alerts_db(tmp_path: Path) -> Path:
    path = tmp_path / "alerts" / "alerts.db"
    store = AlertStore(path)
    dump = make_alert("illegal_dumping", Severity.CRITICAL, site_id="trk-z8801", device_id="trk-z8801",
                      subject="桂BZ8801", summary="load dropped 9 t outside every disposal site",
                      evidence=["trk-z8801:1:41", "trk-z8801:1:42"], ts=START + timedelta(hours=1),
                      dedup_key="a", lat=24.41, lon=109.41)
    full = make_alert("bin_full", Severity.WARNING, site_id="cz-wuxing", device_id="ss-1", subject="ss-1",
                      summary="kitchen bin 95 %", evidence=["ss-1:1:7"], ts=START + timedelta(hours=2),
                      dedup_key="b")
    late = make_alert("bin_full", Severity.WARNING, site_id="cz-wuxing", device_id="ss-2", subject="ss-2",
                      summary="outside the period", evidence=["ss-2:1:9"], ts=END + timedelta(hours=1),
                      dedup_key="c")
    for a in (dump, full, late):
        store.ingest(a, cooldown_s=0, channels=[])
    store.transition(dump.alert_id, "ack", "王警官")
    store.transition(dump.alert_id, "close", "王警官", "fined")
    store.close()
    return path


@pytest.fixture
def report(tmp_path: Path, alerts_db: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(build, "fetch_period", fake_period)
    out = build.build_report(Settings(run_dir=tmp_path), START, END, tmp_path / "r" / "report.html",
                             alerts_db=alerts_db, alerts_base_url="https://alerts.example.gov.cn/api/",
                             now=NOW)
    return out.read_text(encoding="utf-8")


def _judged_from_data(html: str) -> list[str]:
    """Indicator rows judged met / not met, except the one judged from the rules' registry
    (design capacity share: a fact about the facilities, not a measurement of the period)."""
    rows = re.findall(r"<tr><td>\d+</td>.*?</tr>", html)
    return [r for r in rows if ("s-met" in r or "s-not-met" in r) and "焚烧处理能力占比" not in r]


def _report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, start: datetime, end: datetime,
            now: datetime) -> str:
    monkeypatch.setattr(build, "fetch_period", fake_period)
    return build.build_report(Settings(run_dir=tmp_path), start, end, tmp_path / "p.html",
                              now=now).read_text(encoding="utf-8")


def test_alert_store_read_only_and_period(alerts_db: Path) -> None:
    log = from_store(alerts_db, START, END)
    assert [a.kind for a in log.alerts] == ["bin_full", "illegal_dumping"]  # newest first, late one excluded
    dump = log.alerts[1]
    assert dump.state == "closed" and dump.closed_by == "王警官" and dump.acked_by == "王警官"
    assert dump.evidence == ["trk-z8801:1:41", "trk-z8801:1:42"]


def test_sections_present(report: str) -> None:
    for heading in ("一、指标对照目标", "二、设施吨位", "三、分类投放", "四、渣土车", "五、告警与执法记录"):
        assert heading in report
    assert "柳州市“无废城市”建设指标报告" in report and "Liuzhou" in report


def test_self_contained(report: str) -> None:
    assert report.count("<svg") >= 2
    # no external asset: no src/href to http(s) except the alert evidence links, no @import, no <script src>
    assert not re.search(r"""(src|srcset)\s*=\s*["']?(https?:)?//""", report)
    assert "@import" not in report and "<link" not in report and "<script" not in report
    external = set(re.findall(r'href="(https?://[^"]+)"', report))
    assert external and all(u.startswith("https://alerts.example.gov.cn/api/alerts/") for u in external)
    assert "url(" not in report


def test_indicator_rows_with_status_and_sources(report: str) -> None:
    assert "《柳州市“无废城市”建设实施方案（2023—2025年）》（柳政发〔2023〕11号） 表1 第12项" in report
    assert "《柳州市生态环境保护“十四五”规划》 第七章 第二节" in report
    # accuracy (90 + 40) / (100 + 60) = 81.25 % < 90: not met; coverage 2/2 = 100 %: met
    assert "81.2" in report or "81.3" in report
    assert "未达标 · not met" in report and "达标 · met" in report
    assert "手工录入 manual" in report and "逐年提高" in report


def test_tonnage_and_capacity(report: str) -> None:
    # incinerator: 80 t in one whole day = 80 t/d of 2250 t/d = 3.6 %; peak 14.2 % (facility_load)
    assert "lz-jm-incinerator" in report and "3.6% 负荷 load" in report and "14.2" in report
    assert "xx-unknown" in report and "not in rules" in report
    assert "1 whole local day" in report


def test_citations_name_the_plan_and_facilities(report: str) -> None:
    """No seed file name or line reaches a reader; facilities by name, ids only as small print."""
    assert not re.search(r"\.txt:L|\d{3}_[0-9a-f]{16}", report)
    assert "柳州市静脉产业园 生活垃圾焚烧发电厂" in report
    assert "鹿寨县固废垃圾环保科技处理及智能化新型制砖厂" in report
    assert "生活垃圾清运量★ 万吨 2020年 92.52 2025年 100" in report  # the quoted row


def test_partial_day_is_measured_not_judged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """90 s of demo traffic: no annualised 万吨/年, no load %, no met / not met; says why."""
    start = NOW - timedelta(seconds=90)
    html = _report(tmp_path, monkeypatch, start, NOW, NOW)
    assert "今日截至目前 So far today" in html and "less than a whole local day" in html
    assert _judged_from_data(html) == []
    assert "不足整日，不评判" in html
    assert "负荷 load" not in html  # no capacity use from 90 s
    assert "105.0 t measured so far" in html  # household at terminal facilities: 80 + 20 + 5 t
    assert "Judged: none" in html


def test_whole_day_judged_and_today_shown_apart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    html = _report(tmp_path, monkeypatch, START, NOW, NOW)
    judged, _, today = html.partition("今日截至目前 So far today")
    assert _judged_from_data(judged) and "× 365 / 1: annualised from 1 whole day" in judged
    assert today and _judged_from_data(today) == []


def test_after_the_plan_period_nothing_is_judged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    day = datetime(2026, 12, 2, tzinfo=ZoneInfo("Asia/Shanghai"))
    html = _report(tmp_path, monkeypatch, day, day + timedelta(days=1), day + timedelta(days=1, hours=9))
    assert "规划期已结束" in html and "plan period ended" in html and "2023—2025年" in html
    assert "达标 · met" not in html and "未达标 · not met" not in html  # not even from the registry
    assert "targets applying to 2026" not in html


def test_alert_log_with_evidence_links(report: str) -> None:
    assert "违规倾倒" in report and "垃圾桶满溢" in report and "严重" in report
    assert "王警官" in report and "trk-z8801:1:41" in report
    assert 'href="https://alerts.example.gov.cn/api/alerts/illegal_dumping:' in report
    assert "outside the period" not in report
    assert "办结率 50.0%" in report


def test_muck_trucks(report: str) -> None:
    assert "75.0%" in report and "15.00 / 20.00" in report


def test_no_data_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build, "fetch_period", lambda s, a, b, **kw: PeriodData(a, b))
    html = build.build_report(Settings(run_dir=tmp_path), START, END, tmp_path / "empty.html",
                              city="foshan").read_text(encoding="utf-8")
    assert "本期无过磅数据" in html and "No alert service data" in html and "四、渣土车" not in html
    assert "无数据 · no data" in html


def test_naive_times_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        build.build_report(Settings(run_dir=tmp_path), START.replace(tzinfo=None), END, tmp_path / "x.html")


def test_bar_chart_escapes_and_scales() -> None:
    svg = bar_chart([Bar("<a>", [("residual", 50.0), ("kitchen", 50.0)]), Bar("b", [("residual", 25.0)])],
                    title="t & u", unit="t", reference=80, reference_label="target")
    assert "&lt;a&gt;" in svg and "t &amp; u" in svg and "<a>" not in svg
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert 'class="ref"' in svg
