"""The spine, end to end on real services: pty serial → edge → Mosquitto → bridge → Kafka → Faust → InfluxDB.

N simulated truck visits in; exactly their count and summed net weight per facility out of InfluxDB.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from wastestream.demo import run_city
from wastestream.foundation.settings import Settings
from wastestream.pipeline import Pipeline

MINI_CITY = Path(__file__).parent.parent / "fixtures" / "mini_city.yaml"

pytestmark = pytest.mark.integration


def test_weighings_arrive_in_influxdb_exactly_once(live_services: Settings, unique: str,
                                                   tmp_path: Path) -> None:
    settings = dataclasses.replace(live_services, influx_db=f"ws_e2e_{unique}",
                                   faust_app_id=f"ws-e2e-{unique}")
    pipeline = Pipeline(settings, tmp_path)
    try:
        result = run_city(pipeline, MINI_CITY, duration=25, drain_timeout=60)
    finally:
        pipeline.stop_all()
    assert set(result.expected) == {"t-incinerator", "t-food"}
    assert all(t.tickets >= 3 for t in result.expected.values()), result.expected
    for site, sent in result.expected.items():
        got = result.got.get(site)
        assert got is not None, f"nothing from {site} in InfluxDB"
        assert got.tickets == sent.tickets, (site, sent, got)
        assert got.net_kg == pytest.approx(sent.net_kg, abs=0.5), (site, sent, got)
