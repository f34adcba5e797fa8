"""The bench's JT/T 808 figure is measured, not asserted: here only that a small run measures."""

from __future__ import annotations

from wastestream.bench.jt808 import run_gateway, summary_line


def test_a_small_load_run_reports_its_figure() -> None:
    r = run_gateway(terminals=40, interval_s=1.0, seconds=3.0)
    assert r["logged_in"] == 40 and r["open"] == 40 and not r["refused"]
    assert r["reports"] > 0 and r["cpu_us_per_report"] is not None and r["cpu_s"] > 0
    line = summary_line(r)
    assert "40 of 40 terminals" in line and "µs per report" in line and "no MQTT" in line
    assert summary_line(None) == "JT/T 808 gateway: not measured"
