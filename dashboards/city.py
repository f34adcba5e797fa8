"""City overview: today's tonnage, the plan indicators computable from site data, open alerts.

Each indicator stat carries its plan target (from the city's indicator table) as thresholds
and in its title; the formulas are the ones in wastestream/indicators/formulas.py, in InfluxQL.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard, stat

from dashboards.common import (
    HOUSEHOLD,
    RECOVERED,
    TZ,
    CityConstants,
    board,
    pie_panel,
    series_panel,
    stat_panel,
    table_panel,
    target_thresholds,
)
from dashboards.query import Query
from dashboards.targets import Target

UID = "ws-city-overview"

RECYCLING = f"""SELECT sum("recovered") / sum("household") * 100 AS "recycling_pct" FROM
  (SELECT sum("net_kg") AS "recovered" FROM "weighing"
   WHERE "category" =~ /^({RECOVERED})$/ AND $timeFilter),
  (SELECT sum("net_kg") AS "household" FROM "weighing"
   WHERE "category" =~ /^({HOUSEHOLD})$/ AND $timeFilter)"""
OPEN_ALERTS = """SELECT sum("n") AS "open" FROM
  (SELECT count("alert_id") AS "n" FROM "alert" WHERE "state" = 'open' AND $timeFilter),
  (SELECT count("alert_id") * -1 AS "n" FROM "alert" WHERE "state" = 'closed' AND $timeFilter)"""
CLOSURE = """SELECT sum("closed") / sum("raised") * 100 AS "closure_pct" FROM
  (SELECT count("alert_id") AS "raised", count("alert_id") * 0 AS "closed" FROM "alert"
   WHERE "state" = 'open' AND $timeFilter),
  (SELECT count("alert_id") AS "closed" FROM "alert" WHERE "state" = 'closed' AND $timeFilter)"""
"""The `* 0` column gives `closed` a value when nothing is closed yet (0 %, not "no data");
InfluxDB 1.6 drops it if it comes from a subquery of its own."""


def indicator(title: str, query: str, target: Target | None, unit: str = "percent") -> stat.Panel:
    """A stat with the plan's 2025 target in its title and as green/red thresholds."""
    panel = stat_panel(f"{title} · {target.label if target else 'no numeric target'}", Query(query), unit,
                       description=target.source if target else "")
    if target and target.value is not None and target.cmp:
        panel = panel.thresholds(target_thresholds(target.cmp, target.value))
    return panel.span(4)


def build(city: CityConstants, targets: dict[str, Target]) -> dashboard.Dashboard:
    d = board(UID, "wastestream · City overview",
              "Today's tonnage by category, the zero-waste-city indicators the site data feeds, alerts.")
    for var in city.variables():
        d = d.with_variable(var)
    return (
        d.with_row(dashboard.Row("Today"))
        .with_panel(stat_panel("Tonnage today (t)", Query(
            'SELECT sum("net_kg") / 1000 AS "net_t" FROM "weighing" WHERE $timeFilter'), "none", w=6))
        .with_panel(pie_panel("Tonnage by category (t)", Query(
            'SELECT sum("net_kg") / 1000 AS "net_t" FROM "weighing" WHERE $timeFilter GROUP BY "category"')
            .alias("$tag_category"), "none", w=6))
        .with_panel(stat_panel("Open alerts (raised, not closed)", Query(OPEN_ALERTS), "none", w=6,
                               decimals=0))
        .with_panel(table_panel("Alerts by kind and state", Query(
            'SELECT count("alert_id") AS "alerts" FROM "alert" WHERE $timeFilter GROUP BY "kind", "state"')
            .table(), w=6))
        .with_row(dashboard.Row("Indicators against the plan's 2025 targets"))
        .with_panel(indicator("Recycling share (%)", RECYCLING, targets.get("recycling_rate")))
        .with_panel(indicator("Sorting accuracy (%)", """SELECT sum("correct") / sum("checked") * 100
            AS "accuracy_pct" FROM "sorting_daily" WHERE $timeFilter""", targets.get("sorting_accuracy")))
        .with_panel(indicator("Participation (%)", """SELECT count(distinct("household")) / $households * 100
            AS "participation_pct" FROM "deposit" WHERE $timeFilter""", targets.get("participation_rate")))
        .with_panel(indicator("Sealed transport (%)", """SELECT sum("sealed_km") / sum("loaded_km") * 100
            AS "sealed_pct" FROM "transport_daily" WHERE $timeFilter""",
            targets.get("sealed_transport_rate")))
        .with_panel(indicator("Incinerator capacity use (%)", """SELECT sum("net_t") / sum("capacity_t") * 100
            AS "use_pct" FROM "facility_load" WHERE "site" =~ /^($incinerators)$/ AND $timeFilter""",
            targets.get("incineration_capacity_use")))
        .with_panel(indicator("Raw household waste landfilled (t)", f"""SELECT sum("net_kg") / 1000
            AS "landfilled_t" FROM "weighing" WHERE "site" =~ /^($landfills)$/
            AND "category" =~ /^({HOUSEHOLD})$/ AND $timeFilter""", targets.get("raw_landfilled"), "none")
            .no_value("0"))
        .with_panel(indicator("Alert closure rate 办结率 (%)", CLOSURE, targets.get("closure_rate")))
        .with_row(dashboard.Row("Today by hour"))
        .with_panel(series_panel("Tonnage per hour by category (t)", [Query(
            f'SELECT sum("net_kg") / 1000 FROM "weighing" WHERE $timeFilter '
            f'GROUP BY time(1h), "category" fill(none) {TZ}').alias("$tag_category")],
            "none", w=24, bars=True))
    )
