"""A real Prometheus scrapes a real bridge and edge agent, and the pipeline-health dashboard's queries
run against it (issue 13): every one parses and evaluates, and those about what the bridge and the
edge expose (rates in/out/dead-lettered, readiness, outbox depth and age, process basics) return
their series. The production scrape config passes `promtool check config`."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from contract import encode, mqtt_topic
from dashboards import pipeline_health
from dashboards.generate import OUT_DIR, file_name
from tests.integration.metricskit import PrivateBroker, free_port, ready, stop_process, wait_for, weighing
from tests.integration.test_metrics_bridge import publish, start_bridge
from tests.integration.test_metrics_edge import site_config
from wastestream.foundation.settings import REPO_ROOT, Settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

DASHBOARD = json.loads((OUT_DIR / file_name(pipeline_health.UID)).read_text(encoding="utf-8"))
EXPRS = [t["expr"] for p in DASHBOARD["panels"] for t in p["targets"]]
WINDOW = "15s"  # $__rate_interval for a 1 s scrape interval (Grafana: at least four intervals)
# What a bridge and an edge agent expose, so these queries must return series here.
ANSWERED = ("ws_messages_in_total", "ws_messages_out_total", "ws_messages_deadlettered_total",
            "ws_ready", "ws_edge_outbox_depth", "ws_edge_outbox_oldest_age_seconds",
            "process_cpu_seconds_total", "process_resident_memory_bytes")


def query(port: int, expr: str) -> dict[str, Any]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.loads(response.read())  # type: ignore[no-any-return]
    except urllib.error.HTTPError as exc:  # 400: the expression does not parse
        return json.loads(exc.read())  # type: ignore[no-any-return]


def test_production_scrape_config_is_valid() -> None:
    done = subprocess.run(["promtool", "check", "config",
                           str(REPO_ROOT / "deploy" / "production" / "prometheus" / "prometheus.yml")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_dashboard_queries_run_on_a_real_prometheus(live_services: Settings, tmp_path: Path,
                                                    unique: str) -> None:
    broker = PrivateBroker(free_port(), tmp_path)
    bridge_port, edge_port, prom_port = free_port(), free_port(), free_port()
    bridge, bridge_log = start_bridge(tmp_path, unique, broker.port, bridge_port)
    config, _ = site_config(tmp_path, f"obs-{unique}", free_port())  # its broker never comes: not ready
    edge_log = tmp_path / "edge.log"
    with open(edge_log, "ab") as out:
        edge = subprocess.Popen([sys.executable, "-m", "edge.agent", "--config", str(config),
                                 "--metrics-port", str(edge_port)],
                                stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    scrape = {"global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
              "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
                                 for job, port in (("bridge", bridge_port), ("edge", edge_port))]}
    (tmp_path / "prometheus.yml").write_text(json.dumps(scrape), encoding="utf-8")
    prom_log = tmp_path / "prometheus.log"
    with open(prom_log, "ab") as out:
        prom = subprocess.Popen(["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
                                 f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                 f"--web.listen-address=127.0.0.1:{prom_port}"],
                                stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
    stop_traffic = threading.Event()
    sender: threading.Thread | None = None
    try:
        wait_for(lambda: ready(bridge_port), "the bridge ready", 60, proc=bridge, log=bridge_log)
        site, device = f"obs-{unique}", f"wb-{unique}"
        topic = mqtt_topic(site, "weighbridge", device, "weighing")
        def traffic() -> None:  # a round a second until the checks are done, so every rate has samples
            round_ = 0
            while not stop_traffic.is_set():
                batch = [(topic, encode(weighing(site, device, round_ * 10 + i))) for i in range(5)]
                publish(broker.port, [*batch, (topic, b"not json")])
                round_ += 1
                stop_traffic.wait(1.0)

        sender = threading.Thread(target=traffic, daemon=True)
        sender.start()

        def answers(expr: str) -> list[dict[str, Any]] | None:
            got = query(prom_port, expr)
            ok = got.get("status") == "success" and got["data"]["result"]
            return got["data"]["result"] if ok else None

        wait_for(lambda: answers('up{job="edge"} == 1') and answers('up{job="bridge"} == 1'),
                 "Prometheus scraping both", 60, proc=prom, log=prom_log)
        wait_for(lambda: answers(f"rate(ws_messages_out_total{{job=\"bridge\"}}[{WINDOW}]) > 0"),
                 "a bridge out rate", 30, proc=prom, log=prom_log)
        for expr in EXPRS:
            got = query(prom_port, expr.replace("$__rate_interval", WINDOW))
            assert got.get("status") == "success", (expr, got)
            if any(name in expr for name in ANSWERED):
                assert got["data"]["result"], f"no series for {expr}"
        ready_by_job = {r["metric"]["job"]: float(r["value"][1]) for r in answers(EXPRS[0]) or []}
        assert ready_by_job == {"bridge": 1.0, "edge": 0.0}  # the edge's broker is not there

        def in_rate_jobs() -> set[str] | None:
            rows = answers(f'sum by (job) (rate(ws_messages_in_total[{WINDOW}]) > 0)') or []
            jobs = {r["metric"]["job"] for r in rows}
            return jobs if jobs == {"bridge", "edge"} else None  # the edge's statuses come every second

        wait_for(in_rate_jobs, "an in rate of both jobs", 30, proc=prom, log=prom_log)
    finally:
        stop_traffic.set()
        if sender is not None:
            sender.join(10)
        for proc in (prom, edge, bridge):
            stop_process(proc)
        broker.stop()
