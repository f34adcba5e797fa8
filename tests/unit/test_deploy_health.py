"""deploy/production: the Python services' compose healthchecks ask their /readyz, and Prometheus
scrapes every one of them (issue 13). The healthcheck script is run against a real endpoint
(wastestream/foundation/observability.py) that is ready, then not."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
import yaml

from wastestream.foundation import observability
from wastestream.foundation.settings import REPO_ROOT

PROD = REPO_ROOT / "deploy" / "production"
SERVICES = yaml.safe_load((PROD / "docker-compose.yml").read_text(encoding="utf-8"))["services"]
PYTHON = sorted(n for n in SERVICES if n.startswith("bridge-") or n in ("worker", "alerts"))
SCRAPE = yaml.safe_load((PROD / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
JOBS = {job["job_name"]: job for job in SCRAPE["scrape_configs"]}


def metrics_port(name: str) -> int:
    return int(SERVICES[name]["environment"]["WS_METRICS_PORT"])


def test_the_python_services_are_these() -> None:
    assert "worker" in PYTHON and "alerts" in PYTHON and len(PYTHON) >= 4


@pytest.mark.parametrize("name", PYTHON)
def test_healthcheck_asks_readyz_on_the_metrics_port(name: str) -> None:
    svc = SERVICES[name]
    assert svc["environment"]["WS_METRICS_HOST"] == "0.0.0.0"  # Prometheus scrapes from its container
    assert metrics_port(name) > 0
    assert svc["healthcheck"]["test"] == ["CMD", "python", "/app/healthcheck.py", "ready",
                                          f"http://127.0.0.1:{metrics_port(name)}/readyz"]


@pytest.mark.parametrize("name", PYTHON)
def test_prometheus_scrapes_every_python_service(name: str) -> None:
    port = metrics_port(name)
    job = JOBS["bridge" if name.startswith("bridge-") else name]
    targets = [t for c in job.get("static_configs", []) for t in c["targets"]]
    by_dns = [(n, c["port"]) for c in job.get("dns_sd_configs", []) for n in c["names"]]
    assert f"{name}:{port}" in targets or (name, port) in by_dns, job


def test_prometheus_runs_in_the_stack_with_its_config_and_grafana_reads_it() -> None:
    prom = SERVICES["prometheus"]
    assert "./prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prom["volumes"]
    assert "ports" not in prom  # internal only
    source = yaml.safe_load((PROD / "grafana" / "provisioning" / "datasources" / "prometheus.yaml")
                            .read_text(encoding="utf-8"))["datasources"][0]
    assert source["url"] == "http://prometheus:9090"


@pytest.fixture
def endpoint() -> Iterator[tuple[int, dict[str, str | None]]]:
    """A real endpoint on its own loop, whose one check answers `state["reason"]`."""
    state: dict[str, str | None] = {"reason": None}
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = observability.serve("test", port, {"thing": lambda: state["reason"]}, loop=loop)
    assert server is not None
    yield server.port, state
    server.close()
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def test_healthcheck_script_follows_readyz(endpoint: tuple[int, dict[str, str | None]]) -> None:
    port, state = endpoint
    cmd = [sys.executable, str(PROD / "healthcheck.py"), "ready", f"http://127.0.0.1:{port}/readyz"]
    assert subprocess.run(cmd, capture_output=True, text=True, timeout=10).returncode == 0
    state["reason"] = "not connected to mosquitto:8883"
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    assert result.returncode == 1
    assert "not ready: thing: not connected to mosquitto:8883" in result.stdout  # docker inspect shows it
    nothing = subprocess.run([*cmd[:3], "http://127.0.0.1:1/readyz"], capture_output=True, text=True,
                             timeout=10)
    assert nothing.returncode == 1
