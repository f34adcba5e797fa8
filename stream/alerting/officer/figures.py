"""The supervisor's figures, computed from the stored workflow (never typed in).

办结率 per week: alerts raised in the week (Beijing time, weeks from Monday) that are closed now,
over all raised in it. Time to acknowledge and to close: from when the service received the alert
(its push went out then) to the step, median and 90th percentile. Open alerts are counted by
district, by age and by the officer they are assigned to.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from stream.alerting.message import BEIJING

AGE_BUCKETS: tuple[tuple[str, float], ...] = (
    ("<1 h", 3600.0), ("1-4 h", 4 * 3600.0), ("4-24 h", 86400.0), ("1-7 d", 7 * 86400.0),
    (">7 d", float("inf")))


@dataclass(frozen=True)
class Week:
    monday: str
    """YYYY-MM-DD of the week's Monday, Beijing time."""
    raised: int
    closed: int
    closure_rate: float | None
    ack_median_min: float | None
    close_median_min: float | None
    close_p90_min: float | None
    escalated: int


def _minutes(durations_ns: list[int]) -> tuple[float | None, float | None]:
    if not durations_ns:
        return None, None
    minutes = sorted(d / 60e9 for d in durations_ns)
    p90 = minutes[min(len(minutes) - 1, int(0.9 * len(minutes)))]
    return round(statistics.median(minutes), 1), round(p90, 1)


def _monday(raised_ns: int) -> str:
    day = datetime.fromtimestamp(raised_ns / 1e9, BEIJING).date()
    return (day - timedelta(days=day.weekday())).isoformat()


def weekly(rows: list[dict[str, Any]]) -> list[Week]:
    """One Week per Monday that has alerts, oldest first (rows: AlertStore.workflow_rows)."""
    by_week: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_week[_monday(r["raised_ns"])].append(r)
    weeks = []
    for monday in sorted(by_week):
        group = by_week[monday]
        closed = [r for r in group if r["state"] == "closed" and r["closed_ns"]]
        start = [r["received_ns"] or r["raised_ns"] for r in group]
        acks = [r["acked_ns"] - s for r, s in zip(group, start, strict=True) if r["acked_ns"]]
        closes = [r["closed_ns"] - (r["received_ns"] or r["raised_ns"]) for r in closed]
        close_median, close_p90 = _minutes(closes)
        weeks.append(Week(monday, len(group), len(closed), round(len(closed) / len(group), 4),
                          _minutes(acks)[0], close_median, close_p90,
                          sum(1 for r in group if r["escalated_ns"])))
    return weeks


@dataclass(frozen=True)
class OpenOverview:
    by_district: dict[str, int]
    by_age: dict[str, int]
    by_assignee: dict[str, int]
    total: int


def open_overview(rows: list[dict[str, Any]], now_ns: int) -> OpenOverview:
    """Open and acknowledged alerts by district ('' = none), age since received, and assignee."""
    active = [r for r in rows if r["state"] != "closed"]
    age: Counter[str] = Counter({label: 0 for label, _ in AGE_BUCKETS})
    for r in active:
        seconds = (now_ns - (r["received_ns"] or r["raised_ns"])) / 1e9
        age[next(label for label, limit in AGE_BUCKETS if seconds < limit)] += 1
    return OpenOverview(
        dict(sorted(Counter(r["district"] for r in active).items())), dict(age),
        dict(sorted(Counter(r["assignee"] or "" for r in active).items())), len(active))
