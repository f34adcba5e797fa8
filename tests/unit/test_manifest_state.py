"""Electronic manifest matching (pure): matched, mismatch, missing, merges, replays, the event clock."""

from __future__ import annotations

from typing import Any

from stream.agents.manifest_state import NS, Event, PlateState, Watermark, step
from stream.rules import ManifestRules, Rules

RULES = Rules(city="t", manifest=ManifestRules(tolerance_pct=5, timeout_s=3600))
T0 = 1_746_000_000 * NS


def ev(kind: Any, s: float, kg: float = 0.0, *, source: Any = "weighbridge", n: int = 0) -> Event:
    return Event(type=kind, plate="桂B1", ts_ns=T0 + round(s * NS), id=f"{source}:{kind}:{n}:{s}", kg=kg,
                 place="origin-1" if kind == "departure" else "dest-1", source=source,
                 device=f"{source}-dev", site="s", msg_id=f"m-{kind}-{s}")


def run(state: PlateState, *events: Event) -> tuple[list[Any], list[Any]]:
    alerts, points = [], []
    for e in events:
        copy = PlateState.from_json(state.to_json())  # through JSON, as the table stores it
        out = step(copy, e, RULES)
        for name in state.__struct_fields__:
            setattr(state, name, getattr(copy, name))
        alerts += out.alerts
        points += out.points
    return alerts, points


def test_matched_within_tolerance() -> None:
    state = PlateState()
    alerts, points = run(state, ev("departure", 0, 15000), ev("arrival", 1800, 14300))
    assert alerts == []
    [p] = points
    assert p.tags == {"origin": "origin-1", "destination": "dest-1", "status": "matched",
                      "device": "weighbridge-dev"}
    assert p.fields["left_kg"] == 15000 and p.fields["arrived_kg"] == 14300
    assert abs(float(p.fields["diff_pct"]) - 4.6667) < 1e-3 and p.ts_ns == T0


def test_mismatch_beyond_tolerance_once() -> None:
    state = PlateState()
    dep, arr = ev("departure", 0, 15000), ev("arrival", 1800, 12000)
    alerts, points = run(state, dep, arr, dep, arr)  # replays change nothing
    [a] = alerts
    assert a.kind == "manifest_mismatch" and a.severity.value == "warning"
    assert a.evidence == ("m-departure-0", "m-arrival-1800") and "20.0 %" in a.summary
    assert [p.tags["status"] for p in points] == ["mismatch"]


def test_missing_after_timeout_on_event_time() -> None:
    state = PlateState()
    run(state, ev("departure", 0, 15000), ev("departure", 0, 15000))
    assert len(state.open) == 1
    assert not state.due(T0 + 3600 * NS, RULES) and state.due(T0 + 3601 * NS, RULES)
    alerts, points = run(state, Event(type="check", plate="桂B1", ts_ns=T0 + 3600 * NS))
    assert alerts == [] and state.open
    alerts, points = run(state, Event(type="check", plate="桂B1", ts_ns=T0 + 3601 * NS))
    [a] = alerts
    assert a.kind == "manifest_missing" and a.severity.value == "critical"
    assert a.evidence == ("m-departure-0",)
    assert points[0].tags["status"] == "missing" and "arrived_kg" not in points[0].fields
    alerts, _ = run(state, Event(type="check", plate="桂B1", ts_ns=T0 + 9999 * NS))
    assert alerts == []  # closed once


def test_fifo_and_unmatched_arrivals() -> None:
    state = PlateState()
    _, points = run(state, ev("arrival", -10, 9000),  # no open manifest: ignored
                    ev("departure", 0, 10000, n=1), ev("departure", 4000, 11000, source="weighbridge", n=2),
                    ev("arrival", 5000, 10000, n=3), ev("arrival", 6000, 11000, n=4))
    assert [(p.fields["left_kg"], p.fields["arrived_kg"]) for p in points] == [(10000, 10000), (11000, 11000)]


def test_both_instruments_see_one_load() -> None:
    state = PlateState()
    _, points = run(state, ev("departure", 0, 14800, source="truck"), ev("departure", 60, 15000),
                    ev("arrival", 1800, 14900), ev("arrival", 1900, 14700, source="truck"))
    [p] = points
    assert p.fields["left_kg"] == 15000 and p.fields["arrived_kg"] == 14900 and p.tags["status"] == "matched"


def test_watermark_event_time_then_wall_time() -> None:
    w = Watermark()
    assert w.now_ns(100.0) is None
    w.observe(T0, 100.0)
    w.observe(T0 - NS, 101.0)  # older event: no change
    assert w.now_ns(100.0) == T0 and w.now_ns(110.0) == T0 + 10 * NS


def test_arrival_that_reaches_the_stream_before_its_departure_still_closes_it() -> None:
    # Departure and arrival come from different devices (different Kafka partitions), and an
    # origin's edge may replay its outbox late: the arrival can be processed first.
    state = PlateState()
    alerts, points = run(state, ev("arrival", 1800, 12000), ev("departure", 0, 15000),
                         ev("arrival", 1800, 12000))  # and a replay changes nothing
    [a] = alerts
    assert a.kind == "manifest_mismatch" and a.evidence == ("m-departure-0", "m-arrival-1800")
    [p] = points
    assert p.tags["status"] == "mismatch" and p.fields["arrived_kg"] == 12000 and p.ts_ns == T0
    assert state.open == [] and state.early == []


def test_kept_arrivals_are_bounded_and_never_match_a_later_departure() -> None:
    state = PlateState()
    run(state, *[ev("arrival", 10 * i, 9000, n=i) for i in range(20)])
    assert len(state.early) == 8  # bounded per plate
    _, points = run(state, ev("departure", 500, 15000, n=99))  # left after every kept arrival
    assert points == [] and len(state.open) == 1
    aging = PlateState()
    run(aging, *[ev("arrival", 10 * i, 9000, n=i) for i in range(20)], ev("arrival", 190 + 3600, 9000, n=20))
    assert [a.ts_ns for a in aging.early] == [T0 + 190 * NS, T0 + 3790 * NS]  # older than timeout_s: gone
