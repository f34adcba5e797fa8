"""Line protocol: escaping, Chinese text, exact and deterministic timestamps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from stream.sinks.line_protocol import Point, day_start_ns, to_line, to_ns


def test_basic_line_sorted_tags_and_typed_fields() -> None:
    p = Point("weighing", {"site": "s1", "category": "kitchen"},
              {"net_kg": 18000.0, "count": 3, "stable": True, "plate": "沪A12345"}, 1_700_000_000_123_456_789)
    assert to_line(p) == (
        'weighing,category=kitchen,site=s1 count=3i,net_kg=18000.0,plate="沪A12345",stable=true '
        "1700000000123456789"
    )


def test_escaping_of_tags_fields_and_measurement() -> None:
    p = Point("my meas,x", {"ta g": "a=b,c d", "k": "back\\slash\\"},
              {"f=1": 'say "hi" \\ now\nthen'}, 1)
    assert to_line(p) == (
        r"my\ meas\,x,k=back\slash,ta\ g=a\=b\,c\ d f\=1="
        '"say \\"hi\\" \\\\ now then" 1'
    )


def test_chinese_tag_values_pass_through() -> None:
    p = Point("tonnage_daily", {"site": "上海老港", "category": "厨余 垃圾"}, {"net_kg": 1.5}, 0)
    assert to_line(p) == r"tonnage_daily,category=厨余\ 垃圾,site=上海老港 net_kg=1.5 0"


def test_empty_tags_and_non_finite_fields_are_omitted() -> None:
    p = Point("m", {"a": "", "b": "x"}, {"v": float("nan"), "w": 2.0}, 5)
    assert to_line(p) == "m,b=x w=2.0 5"
    with pytest.raises(ValueError):
        to_line(Point("m", {}, {"v": float("inf")}, 5))


def test_same_point_same_bytes() -> None:
    a = Point("m", {"z": "1", "a": "2"}, {"y": 1.0, "b": 2.0}, 7)
    b = Point("m", {"a": "2", "z": "1"}, {"b": 2.0, "y": 1.0}, 7)
    assert to_line(a) == to_line(b)


def test_ns_timestamps_are_exact_and_zone_independent() -> None:
    ts = datetime(2026, 3, 1, 8, 30, 15, 123456, tzinfo=UTC)
    assert to_ns(ts) == 1772353815_123456000
    shanghai = ts.astimezone(timezone(timedelta(hours=8)))
    assert to_ns(shanghai) == to_ns(ts)
    assert day_start_ns(ts) == 1772323200_000000000
    # 07:00 in Shanghai on 2 March is still 1 March in UTC.
    assert day_start_ns(datetime(2026, 3, 2, 7, 0, tzinfo=timezone(timedelta(hours=8)))) == day_start_ns(ts)
