"""Where the services are: one place, read from the environment, defaults = deploy/local.

The local services listen on loopback on non-default ports so they never collide with
a system Mosquitto, Kafka or InfluxDB on a developer's machine.

MQTT security (production broker, deploy/production/mosquitto): TLS is on when WS_MQTT_TLS_CA
is set; a client certificate (WS_MQTT_TLS_CERT/KEY) is for the broker's mutual-TLS listener.
The password is read from WS_MQTT_PASSWORD_FILE (preferred: a mounted secret) or
WS_MQTT_PASSWORD, when the client connects; it is never part of the repr.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


@dataclass(frozen=True)
class Settings:
    run_dir: Path = field(default_factory=lambda: Path(_env("WS_RUN_DIR", str(REPO_ROOT / ".run"))))
    city: str = field(default_factory=lambda: _env("WS_CITY", "liuzhou"))
    """The city folder (wastestream/foundation/cities/<city>/) whose rules, scenario and indicators run."""
    rules_file: str = field(default_factory=lambda: _env("WS_RULES", ""))
    log_format: str = field(default_factory=lambda: _env("WS_LOG_FORMAT", "text"))
    """`text` (readable lines) or `json` (one JSON object a line: ts, level, logger, msg, and site,
    device and msg_id where known), for every process (wastestream/foundation/logs.py)."""
    event_loop: str = field(default_factory=lambda: _env("WS_EVENT_LOOP", "uvloop"))
    """`uvloop` (the workers' and bridges' loop, wastestream/foundation/eventloop.py) or `asyncio`."""
    """A rules file instead of the city's rules.yaml (tests and demos write variants); empty: the city's."""
    mqtt_host: str = field(default_factory=lambda: _env("WS_MQTT_HOST", "127.0.0.1"))
    mqtt_port: int = field(default_factory=lambda: int(_env("WS_MQTT_PORT", "18830")))
    mqtt_username: str = field(default_factory=lambda: _env("WS_MQTT_USERNAME", ""))
    mqtt_password_file: str = field(default_factory=lambda: _env("WS_MQTT_PASSWORD_FILE", ""))
    mqtt_password_env: str = field(default_factory=lambda: _env("WS_MQTT_PASSWORD", ""), repr=False)
    mqtt_tls_ca: str = field(default_factory=lambda: _env("WS_MQTT_TLS_CA", ""))
    mqtt_tls_cert: str = field(default_factory=lambda: _env("WS_MQTT_TLS_CERT", ""))
    mqtt_tls_key: str = field(default_factory=lambda: _env("WS_MQTT_TLS_KEY", ""))
    kafka_bootstrap: str = field(default_factory=lambda: _env("WS_KAFKA_BOOTSTRAP", "127.0.0.1:19092"))
    kafka_partitions: int = field(default_factory=lambda: int(_env("WS_KAFKA_PARTITIONS", "4")))
    kafka_linger_ms: int = field(default_factory=lambda: int(_env("WS_KAFKA_LINGER_MS", "25")))
    """How long bridges and workers let a produce batch fill: fewer, larger Kafka requests for a little
    latency. Measured (make bench, 1,000 msg/s offered): 5 ms → Kafka 55 % CPU, 704 msg/s sustained;
    25 ms → Kafka 25 %, 940 msg/s; 50 ms → no further gain."""
    kafka_fetch_min_bytes: int = field(default_factory=lambda: int(_env("WS_KAFKA_FETCH_MIN_BYTES", "16384")))
    """Under load a worker's fetch returns once this much is there, or after `kafka_fetch_max_wait_ms`:
    fewer, fuller fetches (stream/faust_fixes.py, tuning 7). 1: at once (Kafka's default)."""
    kafka_fetch_max_wait_ms: int = field(
        default_factory=lambda: int(_env("WS_KAFKA_FETCH_MAX_WAIT_MS", "400")))
    """Under load, how long a worker's fetch waits for `kafka_fetch_min_bytes`: the latency it may add."""
    kafka_fetch_idle_wait_ms: int = field(
        default_factory=lambda: int(_env("WS_KAFKA_FETCH_IDLE_WAIT_MS", "1500")))
    """After an empty fetch, how long the next waits for a first byte (Faust's 1,500): an idle
    worker's poll rate, at no latency cost (it returns at the first record)."""
    bridge_linger_ms: int = field(default_factory=lambda: int(_env("WS_BRIDGE_LINGER_MS", "250")))
    """How long a bridge gathers a partition's messages into one Kafka record: the records, not the
    messages, are most of Kafka's and the workers' cost at a city's rates (a record held ~2
    messages at 100 ms); 250 ms: the city run 29 -> 22 % of the machine, p99 466 -> 692 ms
    (deploy/production/SCALING.md)."""
    influx_url: str = field(default_factory=lambda: _env("WS_INFLUX_URL", "http://127.0.0.1:18086"))
    influx_db: str = field(default_factory=lambda: _env("WS_INFLUX_DB", "wastestream"))
    influx_api: str = field(default_factory=lambda: _env("WS_INFLUX_API", "v1"))  # v1 | v2
    influx_org: str = field(default_factory=lambda: _env("WS_INFLUX_ORG", "wastestream"))
    influx_token: str = field(default_factory=lambda: _env("WS_INFLUX_TOKEN", ""))
    influx_flush_ms: int = field(default_factory=lambda: int(_env("WS_INFLUX_FLUSH_MS", "100")))
    """Least time between two writes of a worker's InfluxDB sink (stream/sinks/influx.py): an idle sink
    writes at once, a busy one carries what came meanwhile; bounds the request rate."""
    faust_app_id: str = field(default_factory=lambda: _env("WS_FAUST_APP_ID", "wastestream"))
    faust_web_port: int | None = field(
        default_factory=lambda: int(_env("WS_FAUST_WEB_PORT", "") or 0) or None)
    """Faust's web server port on 127.0.0.1; unset: workers run without it (they share a host)."""
    faust_session_timeout_s: float = field(
        default_factory=lambda: float(_env("WS_FAUST_SESSION_TIMEOUT_S", "60")))
    """How long Kafka waits for a silent worker before reassigning its partitions."""
    faust_standby_replicas: int = field(default_factory=lambda: int(_env("WS_FAUST_STANDBY_REPLICAS", "0")))
    """Standby copies of each table on other workers (0: a moved partition is rebuilt from its
    changelog, safe since stream/faust_fixes.py fixes 5 and 6; Faust's default is 1): measurements
    and why in deploy/production/SCALING.md, "Standby replicas"."""
    batch_max: int = field(default_factory=lambda: int(_env("WS_BATCH_MAX", "1000")))
    """Events per agent batch at most (stream/agents/runner.py): bounds memory and what a crash repeats."""
    batch_within_s: float = field(default_factory=lambda: float(_env("WS_BATCH_WITHIN_S", "0.05")))
    """How long an agent batch waits to fill: adds at most this to the latency of a quiet stream."""
    aggregate_within_s: float = field(default_factory=lambda: float(_env("WS_AGGREGATE_WITHIN_S", "1.0")))
    """The same for agents of re-keyed day totals (a facility's load): each batch rewrites every
    facility it touches, so a longer window makes that once a second instead of once a record;
    a capacity alert waits at most this long."""
    edge_resends_file: str = field(default_factory=lambda: _env("WS_EDGE_RESENDS_FILE", ""))
    """An edge agent appends one JSON line (site, time, count) per re-send of messages the pipeline
    did not confirm in time: what the chaos report counts, instead of parsing the agents' logs.
    Empty: not written."""
    raised_alerts_file: str = field(default_factory=lambda: _env("WS_RAISED_ALERTS_FILE", ""))
    """A worker appends one JSON line per alert it raised (once Kafka has it): what THIS worker raised,
    which ws.alerts (shared, replayed by any app) cannot tell; tests count it. Empty: not written."""
    alerts_config: str = field(default_factory=lambda: _env("WS_ALERTS_CONFIG", ""))
    """The alert service's alerts.yaml; empty: no push channels."""
    alerts_port: int | None = field(default_factory=lambda: int(_env("WS_ALERTS_PORT", "") or 0) or None)
    """The alert API's port, over the config's; also where `wastestream alerts` clients call."""
    alerts_url: str = field(default_factory=lambda: _env("WS_ALERTS_URL", ""))
    """Where `wastestream alerts` clients call the alert API; empty: 127.0.0.1 and the port above."""
    alerts_token: str = field(default_factory=lambda: _env("WS_ALERTS_TOKEN", ""), repr=False)
    """The bearer token `wastestream alerts` clients send (the service reads its own from alerts.yaml)."""
    metrics_port: int = field(default_factory=lambda: int(_env("WS_METRICS_PORT", "") or 0))
    """The process's /metrics, /healthz and /readyz port (wastestream/foundation/observability.py);
    0: off. Every process has a `--metrics-port` flag over it: several processes on one host each
    need their own (deploy/production/README.md, "Metrics and health")."""
    metrics_host: str = field(default_factory=lambda: _env("WS_METRICS_HOST", "127.0.0.1"))
    """The address that endpoint binds: loopback, or 0.0.0.0 in a container Prometheus scrapes."""

    def mqtt_password(self) -> str | None:
        """The MQTT password: first line of the password file, else WS_MQTT_PASSWORD, else None."""
        if self.mqtt_password_file:
            lines = Path(self.mqtt_password_file).read_text(encoding="utf-8").splitlines()
            if not lines or not lines[0].strip():
                raise ValueError(f"MQTT password file {self.mqtt_password_file} is empty")
            return lines[0].strip()
        return self.mqtt_password_env or None


def load_settings() -> Settings:
    return Settings()
