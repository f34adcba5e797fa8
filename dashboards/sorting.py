"""Sorting stations: accuracy and participation by community, bin fill levels, full bins."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard

from dashboards.alerts import alerts_by_kind
from dashboards.common import COMMUNITY, TZ, board, gauge_bars, series_panel, table_panel
from dashboards.query import Query

UID = "ws-sorting"
COMM = '"community" =~ /^$community$/ AND $timeFilter'


def build() -> dashboard.Dashboard:
    return (
        board(UID, "wastestream · Sorting stations", "Smart sorting stations: accuracy, participation, bins.")
        .with_variable(COMMUNITY)
        .with_panel(table_panel("Accuracy by community (%)", Query(
            'SELECT sum("correct") / sum("checked") * 100 AS "accuracy_pct", '
            'sum("correct_kg") / sum("checked_kg") * 100 AS "weight_accuracy_pct", '
            f'sum("checked") AS "checked", sum("deposits") AS "deposits" FROM "sorting_daily" '
            f'WHERE {COMM} GROUP BY "community"').table(),
            description="Ratio of sums over the stations (unchecked deposits excluded), never a mean of "
                        "percentages.", w=12))
        .with_panel(table_panel("Participation: households that deposited", Query(
            f'SELECT count(distinct("household")) AS "households" FROM "deposit" WHERE {COMM} '
            'GROUP BY "community"').table(),
            description="Distinct pseudonymous households (anonymous drops not counted); divide by the "
                        "community's registered households for the rate (City overview: all communities).",
            w=12))
        .with_panel(series_panel("Deposits per hour by community", [Query(
            f'SELECT count("kg") FROM "deposit" WHERE {COMM} GROUP BY time(1h), "community" fill(none) {TZ}')
            .alias("$tag_community")], "none", w=12, bars=True))
        .with_panel(table_panel("Deposits by bin and verdict", Query(
            f'SELECT count("kg") AS "deposits", sum("kg") AS "kg" FROM "deposit" WHERE {COMM} '
            'GROUP BY "community", "bin", "verdict"').table(), w=12))
        .with_panel(series_panel("Fill level (%)", [Query(
            f'SELECT max("fill_pct") FROM "bin_level" WHERE {COMM} '
            'GROUP BY time($__interval), "device", "bin" fill(none)').alias("$tag_device $tag_bin")],
            "percent", w=12))
        .with_panel(gauge_bars("Fill level now (%)", Query(
            f'SELECT last("fill_pct") FROM "bin_level" WHERE {COMM} GROUP BY "device", "bin"')
            .alias("$tag_device $tag_bin"), "percent", w=12))
        .with_panel(table_panel("Full bins", Query(
            'SELECT "subject" AS "station", "count" FROM "alert" WHERE "kind" = \'bin_full\' '
            'AND "state" = \'open\' AND "site" =~ /^$community$/ AND $timeFilter').table(),
            description="bin_full alerts raised (a station's site is its community).", w=24))
        .with_panel(alerts_by_kind(UID, "Sorting alerts by kind", '"site" =~ /^$community$/ AND $timeFilter',
                                   description="Full bins and low sorting accuracy per community.", w=24))
    )
