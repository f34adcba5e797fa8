"""The site data of one period, read from InfluxDB with InfluxQL (a few GROUP BY queries).

Formulas (formulas.py) are pure functions of a `PeriodData`, so each can be tested with a tiny
hand-made dataset; this module is the only one that talks to InfluxDB.

Event-time measurements (`weighing`, `deposit`, `bin_level`) are filtered on `[start, end)`
exactly. Daily measurements (`transport_daily`, `facility_load`) are stamped at the local
midnight that starts their day, so their filter starts at the local midnight of `start`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from wastestream.foundation.influxql import influxql
from wastestream.foundation.settings import Settings


@dataclass
class Tonnage:
    net_kg: float = 0.0
    tickets: int = 0


@dataclass
class CommunitySorting:
    correct: int = 0
    incorrect: int = 0
    unchecked: int = 0
    kg: float = 0.0
    households: int = 0
    """Distinct pseudonymous households that deposited in the period (anonymous drops excluded)."""
    stations: set[str] = field(default_factory=set)
    """Stations (devices) that reported a deposit or a fill level in the period: live stations."""

    @property
    def checked(self) -> int:
        return self.correct + self.incorrect

    @property
    def deposits(self) -> int:
        return self.correct + self.incorrect + self.unchecked


@dataclass
class PeriodData:
    start: datetime
    end: datetime
    tonnage: dict[tuple[str, str], Tonnage] = field(default_factory=dict)
    """(site, category) -> net kg and tickets (`weighing`)."""
    peak_load_pct: dict[str, float] = field(default_factory=dict)
    """site -> highest daily load % of design capacity (`facility_load`)."""
    sorting: dict[str, CommunitySorting] = field(default_factory=dict)
    """community -> deposits by verdict, households, live stations (`deposit`, `bin_level`)."""
    loaded_km: float | None = None
    sealed_km: float | None = None
    """Σ over trucks and days (`transport_daily`); None when the measurement has no data."""
    trucks: int = 0
    manifests: dict[str, int] = field(default_factory=dict)
    """status (matched / mismatch / missing) -> count (`manifest`)."""
    timezone: str = "Asia/Shanghai"
    now: datetime | None = None
    """The clock the period is judged against (None: the wall clock)."""

    @property
    def whole_days(self) -> int:
        """Local days the period covers exactly (from a local midnight to one, all of them past):
        0 for a partial day, whatever its length. Targets are judged on whole days only."""
        if self.start.tzinfo is None or self.end.tzinfo is None:
            return 0
        now = self.now or datetime.now(ZoneInfo(self.timezone))
        if self.end > now or local_midnight(self.start, self.timezone) != self.start \
                or local_midnight(self.end, self.timezone) != self.end:
            return 0
        return round((self.end - self.start).total_seconds() / 86400.0)

    @property
    def days(self) -> float:
        """Length of the period in days (fractional: a 10-minute demo is 10/1440 of a day)."""
        return max((self.end - self.start).total_seconds(), 1.0) / 86400.0

    def net_t(self, sites: set[str] | None = None, categories: set[str] | None = None) -> float:
        """Σ net tonnes over the chosen sites and categories (None: all)."""
        return sum(t.net_kg for (s, c), t in self.tonnage.items()
                   if (sites is None or s in sites) and (categories is None or c in categories)) / 1000.0

    def tickets(self, sites: set[str] | None = None, categories: set[str] | None = None) -> int:
        return sum(t.tickets for (s, c), t in self.tonnage.items()
                   if (sites is None or s in sites) and (categories is None or c in categories))


def ns(ts: datetime) -> int:
    return int(ts.timestamp() * 1_000_000) * 1000


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


def local_midnight(ts: datetime, tz: str) -> datetime:
    local = ts.astimezone(ZoneInfo(tz))
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def fetch_period(settings: Settings, start: datetime, end: datetime, *, timezone: str = "Asia/Shanghai",
                 sites: set[str] | None = None, timeout: float = 60.0) -> PeriodData:
    """Read everything the formulas need for `[start, end)`; `sites` keeps only those facilities."""
    data = PeriodData(start, end, timezone=timezone)
    where = f"time >= {ns(start)} AND time < {ns(end)}"
    day_where = f"time >= {ns(local_midnight(start, timezone))} AND time < {ns(end)}"
    site_where = ""
    if sites is not None:
        match = " OR ".join(f"\"site\" = '{_quote(s)}'" for s in sorted(sites))
        site_where = f"({match}) AND " if sites else "\"site\" = '' AND "

    def query(q: str) -> list[dict[str, Any]]:
        return influxql(settings, q, timeout=timeout)

    for row in query(f'SELECT sum("net_kg") AS net_kg, count("net_kg") AS tickets FROM "weighing" '
                     f'WHERE {site_where}{where} GROUP BY "site", "category"'):
        data.tonnage[(row["site"], row["category"])] = Tonnage(float(row["net_kg"] or 0), int(row["tickets"]))

    for row in query(f'SELECT max("load_pct") AS peak FROM "facility_load" WHERE {site_where}{day_where} '
                     f'GROUP BY "site"'):
        if row.get("peak") is not None and (sites is None or row["site"] in sites):
            data.peak_load_pct[row["site"]] = float(row["peak"])

    sorting: dict[str, CommunitySorting] = defaultdict(CommunitySorting)
    for row in query(f'SELECT count("kg") AS n, sum("kg") AS kg FROM "deposit" WHERE {where} '
                                  f'GROUP BY "community", "device", "verdict"'):
        c = sorting[row["community"]]
        n = int(row["n"])
        verdict = row.get("verdict", "unchecked")
        if verdict == "correct":
            c.correct += n
        elif verdict == "incorrect":
            c.incorrect += n
        else:
            c.unchecked += n
        c.kg += float(row["kg"] or 0)
        c.stations.add(row["device"])
    for row in query(f'SELECT count(distinct("household")) AS hh FROM "deposit" WHERE {where} '
                                  f'GROUP BY "community"'):
        sorting[row["community"]].households = int(row["hh"])
    for row in query(f'SELECT count("fill_pct") AS n FROM "bin_level" WHERE {where} '
                                  f'GROUP BY "community", "device"'):
        sorting[row["community"]].stations.add(row["device"])
    data.sorting = dict(sorting)

    rows = query(f'SELECT sum("loaded_km") AS loaded, sum("sealed_km") AS sealed FROM '
                              f'"transport_daily" WHERE {day_where} GROUP BY "device"')
    if rows:
        data.loaded_km = sum(float(r["loaded"] or 0) for r in rows)
        data.sealed_km = sum(float(r["sealed"] or 0) for r in rows)
        data.trucks = len({r["device"] for r in rows})
    for row in query(f'SELECT count("left_kg") AS n FROM "manifest" WHERE {where} GROUP BY "status"'):
        data.manifests[row["status"]] = int(row["n"])
    return data


def split_whole_days(start: datetime, end: datetime, now: datetime, tz: str
                     ) -> tuple[tuple[datetime, datetime] | None, list[tuple[datetime, datetime]]]:
    """`[start, end)` as its whole local days (past ones only) and the partial pieces around them.

    Returns (whole, partials): `whole` from the first local midnight at or after `start` to the
    last one at or before min(end, now), or None when no whole day fits; `partials` the rest,
    in time order (the part of a day before the first midnight, and "so far today")."""
    stop = min(end, now)
    first = local_midnight(start, tz)
    if first < start:
        first = local_midnight(first + timedelta(hours=36), tz)
    last = local_midnight(stop, tz)
    if last <= first:
        return None, ([(start, end)] if start < end else [])
    partials = [(start, first)] if start < first else []
    if last < end:
        partials.append((last, end))
    return (first, last), partials


def period_of_days(day: datetime, days: int) -> tuple[datetime, datetime]:
    """`days` local days starting at the local midnight of `day`."""
    start = day.replace(hour=0, minute=0, second=0, microsecond=0)
    return start, start + timedelta(days=days)
