"""Weighbridge integrity: each ticket flag maps to one `weighbridge_<flag>` alert."""

from __future__ import annotations

from datetime import UTC, datetime

from contract.events import Direction, Severity, WasteCategory, Weighing, WeighingFlag
from stream.agents.integrity import integrity_alerts
from stream.alerting.make import alert_id


def ticket(*flags: WeighingFlag) -> Weighing:
    return Weighing(msg_id="wb-1:1:42", device_id="wb-1", site_id="lzh-food",
                    ts=datetime(2026, 3, 1, 2, tzinfo=UTC), ticket_id="T42", plate="桂B12345",
                    direction=Direction.INBOUND, gross_kg=30_000, tare_kg=10_000, net_kg=20_000,
                    category=WasteCategory.KITCHEN, origin="chengzhong", flags=flags)


def test_every_flag_maps_to_one_alert_with_the_ticket_as_evidence() -> None:
    alerts = integrity_alerts(ticket(*WeighingFlag))
    assert [a.kind for a in alerts] == [f"weighbridge_{f.value}" for f in WeighingFlag]
    for a, flag in zip(alerts, WeighingFlag, strict=True):
        assert a.evidence == ("wb-1:1:42",)
        assert a.alert_id == alert_id(a.kind, f"lzh-food/wb-1:1:42|{flag.value}")
        expected = {WeighingFlag.OVER_RATING: Severity.CRITICAL, WeighingFlag.NET_MODE: Severity.INFO}
        assert a.severity == expected.get(flag, Severity.WARNING)
        assert a.subject == ("wb-1" if flag == WeighingFlag.CLOCK_SKEW else "桂B12345")


def test_no_flags_no_alerts_and_repeated_flags_once() -> None:
    assert integrity_alerts(ticket()) == []
    double = integrity_alerts(ticket(WeighingFlag.DOUBLE_WEIGHING, WeighingFlag.DOUBLE_WEIGHING))
    assert [a.kind for a in double] == ["weighbridge_double_weighing"]
    assert integrity_alerts(ticket(WeighingFlag.DOUBLE_WEIGHING)) == double  # deterministic: replay = same
