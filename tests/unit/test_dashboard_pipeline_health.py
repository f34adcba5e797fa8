"""The pipeline-health dashboard (dashboards/pipeline_health.py): every panel reads Prometheus through
the provisioned datasource, and every metric it names is one a process of ours exposes."""

from __future__ import annotations

import json
import re

import yaml

from dashboards import pipeline_health
from dashboards.generate import OUT_DIR, file_name
from wastestream.foundation.settings import REPO_ROOT

MODEL = json.loads((OUT_DIR / file_name(pipeline_health.UID)).read_text(encoding="utf-8"))
DATASOURCES = REPO_ROOT / "deploy" / "production" / "grafana" / "provisioning" / "datasources"
SOURCES = [REPO_ROOT / p for p in ("wastestream/foundation/observability.py", "stream/metrics.py",
                                   "stream/sinks/metrics.py", "stream/alerting/metrics.py",
                                   "edge/metrics.py")]
KINDS = r"(Counter|TopicCounter|Gauge|Histogram|GaugeMetricFamily)"
DECLARED = re.compile(KINDS + r'\(\s*"(ws_[a-z_]+)"')
METRIC = re.compile(r"\b((?:ws|process)_[a-z_]+)\b")
PROMETHEUS_CLIENT = {"process_cpu_seconds_total", "process_resident_memory_bytes"}  # its default collector
SUFFIXES = {"Counter": ("_total",), "TopicCounter": ("_total",), "Histogram": ("_bucket", "_sum", "_count")}


def exposed() -> set[str]:
    """Every sample name our processes can expose (a counter's _total, a histogram's _bucket, ...)."""
    names: set[str] = set(PROMETHEUS_CLIENT)
    for path in SOURCES:
        for kind, name in DECLARED.findall(path.read_text(encoding="utf-8")):
            names |= {name + s for s in SUFFIXES.get(kind, ("",))}
    return names


def targets() -> list[dict]:
    return [t for p in MODEL["panels"] for t in p.get("targets", [])]


def test_every_panel_reads_the_provisioned_prometheus() -> None:
    provisioned = yaml.safe_load((DATASOURCES / "prometheus.yaml").read_text(encoding="utf-8"))
    [source] = provisioned["datasources"]
    assert (source["type"], source["uid"]) == ("prometheus", pipeline_health.DATASOURCE_UID)
    assert MODEL["uid"] == pipeline_health.UID and MODEL["panels"]
    for panel in MODEL["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": source["uid"]}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == source["uid"] and target["expr"].strip()


def test_every_metric_on_the_dashboard_is_exposed_by_a_process() -> None:
    used = {m for t in targets() for m in METRIC.findall(t["expr"])}
    assert used, "no metric found in the queries"
    assert sorted(used - exposed()) == []


def test_it_shows_what_operators_need() -> None:
    """Rates in/out/dead-lettered, lag, outbox depth and age, push failures, write p99, readiness."""
    exprs = " ".join(t["expr"] for t in targets())
    for needed in ("rate(ws_messages_in_total", "rate(ws_messages_out_total",
                   "rate(ws_messages_deadlettered_total", "ws_kafka_consumer_lag", "ws_edge_outbox_depth",
                   "ws_edge_outbox_oldest_age_seconds", "ws_push_failures_total",
                   "histogram_quantile(0.99, sum by (le, job) (rate(ws_influx_write_seconds_bucket",
                   "ws_ready"):
        assert needed in exprs, needed


def test_rate_windows_are_grafanas_rate_interval() -> None:
    """A fixed [1m] window shows nothing when the scrape interval is longer: $__rate_interval adapts."""
    for target in targets():
        for window in re.findall(r"\[([^\]]+)\]", target["expr"]):
            assert window == "$__rate_interval", target["expr"]


def test_declared_names_are_prometheus_style() -> None:
    for path in SOURCES:
        for _, name in DECLARED.findall(path.read_text(encoding="utf-8")):
            assert re.fullmatch(r"ws_[a-z]+(_[a-z]+)*", name) and not name.endswith("_total"), name

