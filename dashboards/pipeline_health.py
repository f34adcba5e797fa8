"""Pipeline health: the processes' own Prometheus metrics (wastestream/foundation/observability.py).

Not the city's data (those dashboards read InfluxDB): whether the bridges, workers, alert service
and edge agents are ready, how fast messages go in, out and to the dead-letter topic, how far the
workers lag behind Kafka, how full and how old the edge outboxes are, which push channels fail,
and how long InfluxDB takes to write. `job` is the Prometheus scrape job
(deploy/production/prometheus/prometheus.yml: bridge, worker, alerts, edge).
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from dashboards.common import board, thresholds

UID = "ws-pipeline-health"
DATASOURCE_UID = "wastestream-prometheus"
PROMETHEUS = dm.DataSourceRef(type_val="prometheus", uid=DATASOURCE_UID)
RATE = "[$__rate_interval]"


def prom(expr: str, legend: str, ref: str = "A") -> prometheus.Dataquery:
    return (prometheus.Dataquery().expr(" ".join(expr.split())).legend_format(legend).ref_id(ref)
            .datasource(PROMETHEUS).range())


def series(title: str, queries: list[prometheus.Dataquery], unit: str, description: str,
           w: int = 12) -> timeseries.Panel:
    return (timeseries.Panel().title(title).description(description).datasource(PROMETHEUS)
            .targets(list(queries)).unit(unit).span(w).height(8))


def write_quantile(q: float, ref: str) -> prometheus.Dataquery:
    return prom(f"histogram_quantile({q}, sum by (le, job) (rate(ws_influx_write_seconds_bucket{RATE})))",
                f"p{round(q * 100)} {{{{job}}}}", ref)


def ready_panel() -> stat.Panel:
    """One tile per process: green ready, red not ready (or not scraped: `up` 0 counts as not ready)."""
    return (
        stat.Panel().title("Ready (/readyz)").datasource(PROMETHEUS)
        .description("1 = the process's /readyz answers ready; 0 = not ready (its reason is in "
                     "/readyz and its log) or not scraped at all.")
        .with_target(prom("min by (job, instance) (ws_ready) or min by (job, instance) (up) * 0",
                          "{{job}} {{instance}}"))
        .span(24).height(5).decimals(0)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .graph_mode(cm.BigValueGraphMode.NONE).color_mode(cm.BigValueColorMode.BACKGROUND)
        .thresholds(thresholds((None, "red"), (1, "green")))
        .mappings([dm.ValueMap({"0": dm.ValueMappingResult(text="not ready", color="red"),
                                "1": dm.ValueMappingResult(text="ready", color="green")})])
    )


def build() -> dashboard.Dashboard:
    d = board(UID, "wastestream · Pipeline health",
              "The pipeline's own processes (Prometheus): ready, message rates, lag, outboxes, pushes, "
              "InfluxDB writes.", time_from="now-1h")
    return (
        d.with_panel(ready_panel())
        .with_panel(series("Messages in per process", [prom(
            f"sum by (job) (rate(ws_messages_in_total{RATE}))", "{{job}}")], "reqps",
            "MQTT messages a bridge takes, records a worker or the alert service decodes, events an edge "
            "stores (ws_messages_in_total).", w=8))
        .with_panel(series("Messages out per topic", [prom(
            f"sum by (job, topic) (rate(ws_messages_out_total{RATE}))", "{{job}} {{topic}}")], "reqps",
            "In Kafka (bridge), handed to the analyses (worker), stored (alert service), delivered (edge).",
            w=8))
        .with_panel(series("Dead-lettered per topic", [prom(
            f"sum by (job, topic) (rate(ws_messages_deadlettered_total{RATE}))", "{{job}} {{topic}}")],
            "reqps", "Refused input on its way to ws.deadletter (with its reason there), per source topic.",
            w=8))
        .with_panel(series("Kafka consumer lag (workers)", [prom(
            "sum by (topic) (ws_kafka_consumer_lag)", "{{topic}}")], "short",
            "Records not yet committed by the workers' group, per topic: grows when the workers fall "
            "behind or stop.", w=12))
        .with_panel(series(
            "InfluxDB write latency p99", [write_quantile(0.99, "A"), write_quantile(0.5, "B")], "s",
            "Time of each acknowledged batch write (ws_influx_write_seconds); failed attempts are "
            "ws_influx_write_failures_total.", w=12))
        .with_panel(series("Edge outbox depth", [prom(
            "max by (site) (ws_edge_outbox_depth)", "{{site}}")], "short",
            "Messages waiting in each scraped edge agent's outbox (a growing one: its link or the "
            "bridges are down).", w=8))
        .with_panel(series("Edge outbox: oldest message's age", [prom(
            "max by (site) (ws_edge_outbox_oldest_age_seconds)", "{{site}}")], "s",
            "How long the oldest undelivered message has waited at each site.", w=8))
        .with_panel(series("Push failures per channel", [prom(
            f"sum by (channel) (increase(ws_push_failures_total{RATE}))", "{{channel}}")], "short",
            "Failed push attempts (retried, or given up after the last): DingTalk, WeCom, webhook, MQTT.",
            w=8))
        .with_panel(series("CPU per process", [prom(
            f"rate(process_cpu_seconds_total{RATE})", "{{job}} {{instance}}")], "percentunit",
            "Process basics from prometheus-client.", w=12))
        .with_panel(series("Memory per process", [prom(
            "process_resident_memory_bytes", "{{job}} {{instance}}")], "bytes",
            "Resident memory per process.", w=12))
    )
