"""Facilities: tonnage per hour and day against design capacity, per origin and category,
and the weighbridge integrity events (anti-cheat flags turned into alerts)."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard

from dashboards.alerts import alerts_by_kind
from dashboards.common import FACILITY, TZ, board, gauge_bars, series_panel, stat_panel, table_panel
from dashboards.query import Query

UID = "ws-facilities"
SITE = '"site" =~ /^$facility$/ AND $timeFilter'


def build() -> dashboard.Dashboard:
    return (
        board(UID, "wastestream · Facilities", "Weighbridge tonnage per facility against design capacity.")
        .with_variable(FACILITY)
        .with_panel(stat_panel("Tickets (磅单)", Query(
            f'SELECT count("net_kg") AS "tickets" FROM "weighing" WHERE {SITE} GROUP BY "site"')
            .alias("$tag_site"), "none", w=8, decimals=0))
        .with_panel(gauge_bars("Load today (% of design capacity)", Query(
            f'SELECT last("load_pct") AS "load_pct" FROM "facility_load" WHERE {SITE} GROUP BY "site"')
            .alias("$tag_site"), "percent", w=16))
        .with_panel(series_panel("Tonnage per hour by facility (t)", [Query(
            f'SELECT sum("net_kg") / 1000 FROM "weighing" WHERE {SITE} '
            f'GROUP BY time(1h), "site" fill(none) {TZ}').alias("$tag_site")], "none", w=24, bars=True))
        .with_panel(table_panel("Tonnage per day vs design capacity", Query(
            'SELECT last("net_t") AS "net_t", last("capacity_t") AS "capacity_t", '
            f'last("load_pct") AS "load_pct", last("tickets") AS "tickets" FROM "facility_load" WHERE {SITE} '
            f'GROUP BY time(1d), "site" fill(none) {TZ}').table(), w=12))
        .with_panel(table_panel("Tonnage per day by origin (t)", Query(
            'SELECT sum("net_kg") / 1000 AS "net_t", count("net_kg") AS "tickets" '
            f'FROM "weighing" WHERE {SITE} GROUP BY time(1d), "site", "origin" fill(none) {TZ}').table(),
            w=12))
        .with_panel(table_panel("Tonnage per day by category (t)", Query(
            'SELECT sum("net_kg") / 1000 AS "net_t", count("net_kg") AS "tickets" '
            f'FROM "weighing" WHERE {SITE} GROUP BY time(1d), "site", "category" fill(none) {TZ}')
            .table(), w=12))
        .with_panel(alerts_by_kind(UID, "Facility alerts: integrity, capacity, raw waste", SITE,
            description="Anti-cheat flags on tickets (double weighing, unstable capture, tare deviation, "
                        "over rating, ...), over capacity, raw waste landfilled; occurrences include "
                        "cool-down repeats folded into one alert."))
    )
