"""Devices: data freshness per device, device status (online, outbox depth, errors), pipeline latency.

Data freshness is read from the devices' own data points (last point per device), so it works
whatever reports device status; the status panels read `device_status`.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard

from dashboards.alerts import alerts_by_kind
from dashboards.common import board, series_panel, table_panel, tag_variable
from dashboards.query import Query

UID = "ws-devices"
STATUS = '"site" =~ /^$site$/ AND $timeFilter'


def build() -> dashboard.Dashboard:
    d = board(UID, "wastestream · Devices",
              "Edge devices: status, outboxes, errors, freshness; pipeline latency.", time_from="now-6h")
    return (
        d.with_variable(tag_variable("site", "edge site", None, "site"))
        .with_panel(table_panel("Device status (last report)", Query(
            'SELECT last("online") AS "online", last("outbox_depth") AS "outbox_depth", '
            f'last("last_error") AS "last_error" FROM "device_status" WHERE {STATUS} '
            'GROUP BY "site", "device"')
            .table(), w=12))
        .with_panel(series_panel("Outbox depth per edge site", [Query(
            f'SELECT max("outbox_depth") FROM "device_status" WHERE "device" =~ /-edge$/ AND {STATUS} '
            'GROUP BY time($__interval), "site" fill(none)').alias("$tag_site")], "none", w=12,
            description="The site's store-and-forward outbox (every status of a site carries it; "
                        "read from the edge agent's own status, device {site}-edge)."))
        .with_panel(table_panel("Data freshness: weighbridges (last ticket)", Query(
            'SELECT last("net_kg") AS "net_kg" FROM "weighing" WHERE $timeFilter GROUP BY "site", "device"')
            .table(), w=8))
        .with_panel(table_panel("Data freshness: sorting stations (last fill reading)", Query(
            'SELECT last("fill_pct") AS "fill_pct" FROM "bin_level" WHERE $timeFilter '
            'GROUP BY "site", "device"')
            .table(), w=8))
        .with_panel(table_panel("Data freshness: trucks (last report)", Query(
            'SELECT last("speed") AS "speed" FROM "truck_position" WHERE $timeFilter '
            'GROUP BY "site", "device"')
            .table(), w=8))
        .with_panel(series_panel("Pipeline latency: device → InfluxDB (ms)", [
            Query('SELECT max("p99_ms") AS "p99" FROM "pipeline_latency" WHERE "measurement" = \'weighing\' '
                  'AND $timeFilter GROUP BY time($__interval), "host" fill(none)').alias("p99 $tag_host"),
            Query('SELECT mean("p50_ms") AS "p50" FROM "pipeline_latency" WHERE "measurement" = \'weighing\' '
                  'AND $timeFilter GROUP BY time($__interval), "host" fill(none)')
            .alias("p50 $tag_host").ref("B"),
        ], "ms", w=24))
        .with_panel(alerts_by_kind(UID, "Device alerts by kind", STATUS, w=24,
                                   description="Offline devices, growing outboxes, stuck sensors."))
    )
