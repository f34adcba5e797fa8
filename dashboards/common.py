"""Shared pieces of every dashboard: template variables, the city's constants, panel helpers.

Queries use `=~ /^$facility$/` so that multi-select and "All" work (Grafana expands a multi
value to `(a|b)` in regex context). City constants (which sites are incinerators, registered
households) are hidden constant variables taken from the city's rules file at generation time,
so the queries themselves stay the same for every city and the proof test can substitute the
test city's values exactly as it substitutes `$facility`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from grafana_foundation_sdk.builders import bargauge, dashboard, geomap, piechart, stat, table, timeseries
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from dashboards.query import DATASOURCE, Query
from stream.rules import Rules
from wastestream.foundation.city import city

TIMEZONE = city().timezone()
"""The city's time zone (WS_CITY's rules.yaml): local days in queries and the dashboards' clock."""
TZ = f"tz('{TIMEZONE}')"
HOUSEHOLD = "kitchen|recyclable|hazardous|residual"
"""The national four-way sort: household waste (生活垃圾) categories."""
RECOVERED = "recyclable|kitchen"
"""Household waste recovered (回收利用): recyclables plus kitchen/food waste, net."""


@dataclass(frozen=True)
class CityConstants:
    """What the queries need from the city's rules, as regex alternations and numbers."""

    incinerators: str
    landfills: str
    households: int

    @classmethod
    def from_rules(cls, rules: Rules) -> CityConstants:
        def sites(kind: str) -> str:
            return "|".join(re.escape(f.id) for f in rules.facilities if f.kind == kind) or "(none)"

        return cls(sites("incineration"), sites("landfill"), sum(c.households for c in rules.communities))

    def variables(self) -> list[dashboard.ConstantVariable]:
        return [
            constant("incinerators", self.incinerators),
            constant("landfills", self.landfills),
            constant("households", str(self.households)),
        ]


def constant(name: str, value: str) -> dashboard.ConstantVariable:
    return dashboard.ConstantVariable(name).value(value)


def tag_variable(name: str, label: str, measurement: str | None, key: str) -> dashboard.QueryVariable:
    """A multi-select variable over one tag's values (InfluxQL SHOW TAG VALUES), "All" included."""
    source = f'FROM "{measurement}" ' if measurement else ""
    return (
        dashboard.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query(f'SHOW TAG VALUES {source}WITH KEY = "{key}"')
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .current(dm.VariableOption(selected=True, text="All", value="$__all"))
    )


FACILITY = tag_variable("facility", "facility", "weighing", "site")
COMMUNITY = tag_variable("community", "community", "deposit", "community")
TRUCK = tag_variable("truck", "truck terminal", "truck_position", "device")


def board(uid: str, title: str, description: str, time_from: str = "now/d") -> dashboard.Dashboard:
    return (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["wastestream"])
        .timezone(TIMEZONE)
        .time(time_from, "now")
        .refresh("30s")
        .readonly()
    )


def thresholds(*steps: tuple[float | None, str]) -> dashboard.ThresholdsConfig:
    return (
        dashboard.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(value=v, color=c) for v, c in steps])
    )


def target_thresholds(cmp: str, value: float) -> dashboard.ThresholdsConfig:
    """Green when the value meets the plan's target, red when not."""
    if cmp in ("≤", "<", "="):
        return thresholds((None, "green"), (value + (1e-9 if cmp != "<" else 0), "red"))
    return thresholds((None, "red"), (value, "green"))


def stat_panel(title: str, query: Query, unit: str, description: str = "", w: int = 6,
               decimals: float = 1) -> stat.Panel:
    return (
        stat.Panel().title(title).description(description).datasource(DATASOURCE).with_target(query)
        .unit(unit).decimals(decimals).span(w).height(5)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )


def series_panel(title: str, queries: list[Query], unit: str, description: str = "", w: int = 12,
                 bars: bool = False) -> timeseries.Panel:
    panel = (
        timeseries.Panel().title(title).description(description).datasource(DATASOURCE)
        .targets(list(queries)).unit(unit).span(w).height(8)
    )
    if bars:
        panel = panel.draw_style(cm.GraphDrawStyle.BARS).fill_opacity(60)
    return panel


def table_panel(title: str, query: Query, description: str = "", w: int = 12, unit: str = "") -> table.Panel:
    panel = table.Panel().title(title).description(description).datasource(DATASOURCE).with_target(query)
    return panel.span(w).height(8).unit(unit) if unit else panel.span(w).height(8)


def pie_panel(title: str, query: Query, unit: str, description: str = "", w: int = 6) -> piechart.Panel:
    return (
        piechart.Panel().title(title).description(description).datasource(DATASOURCE).with_target(query)
        .unit(unit).span(w).height(8)
        .reduce_options(cb.ReduceDataOptions().calcs(["sum"]).values(False))
    )


def gauge_bars(title: str, query: Query, unit: str, description: str = "", w: int = 12,
               limit: float = 100) -> bargauge.Panel:
    return (
        bargauge.Panel().title(title).description(description).datasource(DATASOURCE).with_target(query)
        .unit(unit).min(0).max(limit).span(w).height(8)
        .thresholds(thresholds((None, "green"), (0.8 * limit, "orange"), (limit, "red")))
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )


def map_panel(title: str, queries: list[Query], description: str, center: tuple[float, float],
              w: int = 24) -> geomap.Panel:
    """Markers from each query's `lat`/`lon` columns, one layer per query (table format)."""
    layers: list[Builder[cm.MapLayerOptions]] = [
        cb.MapLayerOptions().type("markers").name(q.build().ref_id)
        .location(cb.FrameGeometrySource().mode(cm.FrameGeometrySourceMode.COORDS)
                  .latitude("lat").longitude("lon"))
        .filter_data({"id": "byRefId", "options": q.build().ref_id})
        .tooltip(True)
        for q in queries
    ]
    return (
        geomap.Panel().title(title).description(description).datasource(DATASOURCE).targets(list(queries))
        .view(geomap.MapViewConfig().id("coords").lat(int(center[0])).lon(int(center[1])).zoom(9))
        .basemap(cb.MapLayerOptions().type("default").name("Basemap"))
        .layers(layers).span(w).height(12)
    )
