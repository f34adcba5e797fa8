"""The edge agent's /metrics, /healthz and /readyz, as `python -m edge.agent` (issue 13).

Its broker is a private Mosquitto (a real one, on the test's own port) that is not there at first:
the agent is alive but not ready (503: MQTT not connected), its outbox fills with device statuses
(a heartbeat a second, the weighbridge's port does not exist) and the metrics must say exactly what
the outbox file holds; once the broker comes the agent is ready, the outbox drains and everything
that went in came out; when the broker goes, not ready again."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from contract.topics import MQTT_PREFIX
from tests.integration.metricskit import (
    PrivateBroker,
    Samples,
    answered,
    free_port,
    get,
    ready,
    scrape,
    stop_process,
    value,
    wait_for,
)
from wastestream.foundation.settings import REPO_ROOT, Settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def site_config(tmp_path: Path, site: str, mqtt_port: int) -> tuple[Path, Path]:
    outbox = tmp_path / "outbox.db"
    config = {"site_id": site, "status_interval_s": 1,
              "mqtt": {"host": "127.0.0.1", "port": mqtt_port, "delivery": "broker", "keepalive": 5},
              "outbox": {"path": str(outbox)},
              "devices": [{"id": f"wb-{site}", "kind": "weighbridge", "port": str(tmp_path / "no-such-tty")}]}
    path = tmp_path / "site.yaml"
    path.write_text(json.dumps(config), encoding="utf-8")
    return path, outbox


def rows(outbox: Path) -> int:
    with sqlite3.connect(f"file:{outbox}?mode=ro", uri=True) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0])


def at_rest(port: int, outbox: Path) -> tuple[Samples, int] | None:
    """A scrape and the outbox's row count taken while nothing changed in between (else None)."""
    first, n = scrape(port), rows(outbox)
    second = scrape(port)
    counts = ("ws_messages_in_total", "ws_messages_out_total")
    if any(value(first, c, topic=MQTT_PREFIX) != value(second, c, topic=MQTT_PREFIX) for c in counts) \
            or rows(outbox) != n:
        return None
    return second, n


def drained(port: int, outbox: Path) -> tuple[Samples, int] | None:
    got = at_rest(port, outbox)
    return got if got is not None and got[1] == 0 else None


def test_edge_agent_metrics_follow_its_outbox_and_mqtt(live_services: Settings, tmp_path: Path,
                                                      unique: str) -> None:
    site, mqtt_port, metrics_port = f"obs-{unique}", free_port(), free_port()
    config, outbox = site_config(tmp_path, site, mqtt_port)
    log = tmp_path / "edge.log"
    started = time.time()
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "edge.agent", "--config", str(config),
                                 "--metrics-port", str(metrics_port)],
                                stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    broker: PrivateBroker | None = None
    try:
        _, body = wait_for(answered(metrics_port, "/readyz", 503), "/readyz not ready", 30, proc=proc,
                           log=log)
        assert f"mqtt: not connected to 127.0.0.1:{mqtt_port}" in body, body
        assert "outbox" not in body, body  # the outbox is fine
        assert get(metrics_port, "/healthz") == (200, "alive\n")
        wait_for(lambda: value(scrape(metrics_port), "ws_messages_in_total", topic=MQTT_PREFIX) >= 4,
                 "statuses stored", 30, proc=proc, log=log)

        samples, n = wait_for(lambda: at_rest(metrics_port, outbox), "a quiet moment", 20, proc=proc,
                              log=log)
        assert n >= 4
        assert value(samples, "ws_messages_in_total", topic=MQTT_PREFIX) == n  # nothing delivered yet
        assert value(samples, "ws_messages_out_total", topic=MQTT_PREFIX) == 0
        assert value(samples, "ws_edge_outbox_depth", site=site) == n
        assert value(samples, "ws_edge_mqtt_connected", site=site) == 0
        age = value(samples, "ws_edge_outbox_oldest_age_seconds", site=site)
        assert 0.5 < age <= time.time() - started, age
        assert value(samples, "ws_ready", component="edge") == 0

        broker = PrivateBroker(mqtt_port, tmp_path)
        wait_for(lambda: ready(metrics_port), "the agent ready once the broker is there", 60, proc=proc,
                 log=log)
        samples, _ = wait_for(lambda: drained(metrics_port, outbox), "the outbox drained", 60, proc=proc,
                              log=log)
        assert value(samples, "ws_messages_out_total", topic=MQTT_PREFIX) == \
            value(samples, "ws_messages_in_total", topic=MQTT_PREFIX) > n
        assert value(samples, "ws_messages_deadlettered_total", topic=MQTT_PREFIX) == 0
        assert value(samples, "ws_edge_outbox_dropped_total") == 0
        assert value(samples, "ws_edge_outbox_depth", site=site) == 0
        assert value(samples, "ws_edge_outbox_oldest_age_seconds", site=site) == 0
        assert value(samples, "ws_edge_mqtt_connected", site=site) == 1

        broker.stop()
        _, body = wait_for(answered(metrics_port, "/readyz", 503), "not ready again", 30, proc=proc, log=log)
        assert f"mqtt: not connected to 127.0.0.1:{mqtt_port}" in body, body
    finally:
        stop_process(proc)
        if broker is not None:
            broker.stop()
