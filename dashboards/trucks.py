"""Muck trucks (渣土车): where they are, where alerts were raised, manifests, alerts by kind."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard

from dashboards.alerts import kinds_regex
from dashboards.common import TRUCK, TZ, board, map_panel, series_panel, table_panel
from dashboards.query import Query

UID = "ws-trucks"
TRANSPORT_KINDS = kinds_regex(UID)
"""The alert kinds registered for this dashboard (stream/alertkinds.py): transport and manifest."""
DEV = '"device" =~ /^$truck$/ AND $timeFilter'
CENTER = (24.33, 109.41)  # 柳州 (the map can be panned; the view is only the initial one)


def build() -> dashboard.Dashboard:
    return (
        board(UID, "wastestream · Muck trucks", "Construction-waste trucks: positions, alerts, manifests.")
        .with_variable(TRUCK)
        .with_panel(map_panel("Trucks and alert locations", [
            Query(f'SELECT last("lat") AS "lat", last("lon") AS "lon", last("speed") AS "speed_kmh", '
                  f'last("load_kg") AS "load_kg", last("plate") AS "plate" FROM "truck_position" WHERE {DEV} '
                  'GROUP BY "device"').table(),
            Query('SELECT "lat", "lon", "kind", "subject", "severity" FROM "alert" WHERE "state" = \'open\' '
                  'AND "lat" >= -90 AND $timeFilter').table().ref("B"),
        ], "A: each truck's last reported position; B: alerts raised with a location (illegal dumping, "
           "uncovered transport, ...).", CENTER))
        .with_panel(table_panel("Manifests (电子联单) by status", Query(
            f'SELECT count("manifest_id") AS "manifests" FROM "manifest" WHERE {DEV} '
            'GROUP BY "status"').table(),
            description="matched / mismatch (arrived lighter than it left) / missing (never arrived).", w=8))
        .with_panel(table_panel("Transport alerts by kind", Query(
            f'SELECT count("alert_id") AS "alerts" FROM "alert" WHERE "kind" =~ /{TRANSPORT_KINDS}/ '
            'AND "state" = \'open\' AND $timeFilter GROUP BY "kind"').table(), w=8))
        .with_panel(table_panel("Sealed transport per truck and day", Query(
            f'SELECT last("sealed_pct") AS "sealed_pct", last("sealed_km") AS "sealed_km", '
            f'last("loaded_km") AS "loaded_km" FROM "transport_daily" WHERE {DEV} '
            f'GROUP BY time(1d), "device" fill(none) {TZ}').table(), w=8))
        .with_panel(series_panel("Speed (km/h)", [Query(
            f'SELECT mean("speed") FROM "truck_position" WHERE {DEV} '
            'GROUP BY time($__interval), "device" fill(none)').alias("$tag_device")], "velocitykmh", w=12))
        .with_panel(table_panel("Transport alert log", Query(
            'SELECT "kind", "subject", "severity", "lat", "lon", "count" FROM "alert" '
            f'WHERE "kind" =~ /{TRANSPORT_KINDS}/ AND "state" = \'open\' AND $timeFilter').table(), w=12))
    )
