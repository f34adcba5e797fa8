"""local_day_start_ns is cached per UTC quarter hour (issue 14): the same local midnight as the
direct computation, in zones with odd offsets and DST, and at the instants around a local midnight."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from stream.agents.localday import local_day_start_ns
from stream.sinks.line_protocol import to_ns


def direct(ts: datetime, tz: str) -> int:
    local = ts.astimezone(ZoneInfo(tz))
    return to_ns(datetime(local.year, local.month, local.day, tzinfo=ZoneInfo(tz)))


@pytest.mark.parametrize("tz", ["Asia/Shanghai", "America/New_York", "Asia/Kathmandu", "Australia/Lord_Howe",
                                "America/Santiago", "Asia/Tehran"])
def test_cached_local_day_equals_the_direct_one(tz: str) -> None:
    rng = random.Random(tz)
    instants = [datetime(2020, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(6 * 365 * 86_400),
                                                                microseconds=rng.randrange(10**6))
                for _ in range(3000)]
    for day in range(0, 6 * 365, 7):  # a microsecond either side of local midnights
        midnight = datetime.fromtimestamp(direct(instants[0] + timedelta(days=day), tz) / 1e9, UTC)
        instants += [midnight - timedelta(microseconds=1), midnight, midnight + timedelta(microseconds=1)]
    for ts in instants:
        assert local_day_start_ns(ts, tz) == direct(ts, tz), ts
