"""deploy/local/services.sh: real Mosquitto, Kafka and InfluxDB on loopback.

The shared instance (run dir and ports from the WS_* environment, defaults in wastestream.foundation.settings)
is brought up once and left running for the other integration tests. Tests that need a failing or
a disposable instance use their own WS_RUN_DIR and free ports, so they never disturb it.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import socket
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from wastestream.foundation.settings import REPO_ROOT, load_settings

pytestmark = pytest.mark.integration

SERVICES_SH = REPO_ROOT / "deploy" / "local" / "services.sh"
SERVICES = ("mosquitto", "kafka", "influxdb")
UP_TIMEOUT_S = 240  # cold start may fetch the Kafka jars from Maven Central


def run_services(*args: str, env: dict[str, str] | None = None, timeout: float = UP_TIMEOUT_S):
    return subprocess.run(
        ["bash", str(SERVICES_SH), *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


PID_FILES = {"mosquitto": "mosquitto.pid", "kafka": "kafka.pid", "influxdb": "influxd.pid"}


def read_pids(run_dir: Path) -> dict[str, str]:
    return {svc: (run_dir / svc / name).read_text().strip() for svc, name in PID_FILES.items()}


def pid_alive(pid: str) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


@pytest.fixture(scope="module")
def shared_services() -> Iterator[None]:
    res = run_services("up")
    assert res.returncode == 0, f"services.sh up failed:\n{res.stderr}"
    yield  # left running on purpose: other tests and `make demo` use the same instance


# --- shared instance -----------------------------------------------------------------------------


def test_up_is_idempotent_and_fast(shared_services: None) -> None:
    run_dir = load_settings().run_dir
    before = read_pids(run_dir)
    t0 = time.monotonic()
    res = run_services("up", timeout=60)
    elapsed = time.monotonic() - t0
    assert res.returncode == 0, res.stderr
    assert elapsed < 15, f"second `up` took {elapsed:.1f}s"
    assert "already running" in res.stderr
    assert read_pids(run_dir) == before, "second `up` restarted a service"


def test_status_reports_running(shared_services: None) -> None:
    res = run_services("status", timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    lines = res.stdout.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == list(SERVICES)
    assert all(": running (pid " in line for line in lines), res.stdout


def test_mqtt_publish_and_receive(shared_services: None) -> None:
    import paho.mqtt.client as mqtt

    s = load_settings()
    topic = f"ws-test/services/{uuid.uuid4().hex}"
    received: queue.Queue[bytes] = queue.Queue()
    subscribed = queue.Queue[bool]()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"ws-test-{uuid.uuid4().hex[:8]}")
    client.on_message = lambda _c, _u, msg: received.put(msg.payload)
    client.on_subscribe = lambda _c, _u, _mid, _rc, _props: subscribed.put(True)
    client.connect(s.mqtt_host, s.mqtt_port, keepalive=10)
    client.loop_start()
    try:
        client.subscribe(topic, qos=1)
        assert subscribed.get(timeout=10)
        client.publish(topic, b"hello-waste", qos=1).wait_for_publish(timeout=10)
        assert received.get(timeout=10) == b"hello-waste"
    finally:
        client.loop_stop()
        client.disconnect()


def test_kafka_create_produce_consume(shared_services: None) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    bootstrap = load_settings().kafka_bootstrap
    topic = f"ws-test-services-{uuid.uuid4().hex[:12]}"

    async def scenario() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
            assert topic in await admin.list_topics()
            producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
            await producer.start()
            try:
                for i in range(3):
                    await producer.send_and_wait(topic, f"bin-{i}".encode(), key=b"site-1")
            finally:
                await producer.stop()
            consumer = AIOKafkaConsumer(
                topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
            )
            await consumer.start()
            try:
                got: list[bytes] = []
                async with asyncio.timeout(20):
                    while len(got) < 3:
                        msg = await consumer.getone()
                        got.append(msg.value)
            finally:
                await consumer.stop()
            assert got == [b"bin-0", b"bin-1", b"bin-2"]  # same key -> same partition -> order kept
        finally:
            try:
                await admin.delete_topics([topic])
            finally:
                await admin.close()

    asyncio.run(scenario())


def test_influxdb_write_and_query(shared_services: None) -> None:
    base = load_settings().influx_url.rstrip("/")
    db = f"ws_test_{uuid.uuid4().hex[:12]}"

    def post(path: str, data: bytes, **params: str) -> tuple[int, bytes]:
        url = f"{base}{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(urllib.request.Request(url, data=data, method="POST"), timeout=10) as r:
            return r.status, r.read()

    def query(q: str) -> dict:
        _, body = post("/query", urllib.parse.urlencode({"q": q}).encode(), db=db)
        return json.loads(body)

    with urllib.request.urlopen(f"{base}/ping", timeout=5) as r:
        assert r.status == 204
    query(f'CREATE DATABASE "{db}"')
    try:
        status, _ = post("/write", b"fill_level,site=s1,bin=b7 pct=81.5 1700000000", db=db, precision="s")
        assert status == 204
        res = query("SELECT pct, bin FROM fill_level WHERE site = 's1'")
        series = res["results"][0]["series"][0]
        assert series["columns"] == ["time", "pct", "bin"]
        assert series["values"] == [["2023-11-14T22:13:20Z", 81.5, "b7"]]
    finally:
        query(f'DROP DATABASE "{db}"')


# --- private instances (own run dir, free ports) -------------------------------------------------


def private_env(run_dir: Path) -> dict[str, str]:
    mqtt, kafka, kctl, influx, rpc = free_ports(5)
    return {
        "WS_RUN_DIR": str(run_dir),
        "WS_MQTT_PORT": str(mqtt),
        "WS_KAFKA_PORT": str(kafka),
        "WS_KAFKA_CONTROLLER_PORT": str(kctl),
        "WS_INFLUX_PORT": str(influx),
        "WS_INFLUX_RPC_PORT": str(rpc),
    }


@pytest.mark.parametrize(
    ("service", "port_var"),
    [
        ("mosquitto", "WS_MQTT_PORT"),
        ("kafka", "WS_KAFKA_PORT"),
        ("kafka", "WS_KAFKA_CONTROLLER_PORT"),
        ("influxdb", "WS_INFLUX_PORT"),
        ("influxdb", "WS_INFLUX_RPC_PORT"),
    ],
)
def test_port_taken_by_foreign_listener_fails_clearly(tmp_path: Path, service: str, port_var: str) -> None:
    env = private_env(tmp_path / "run")
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        env[port_var] = str(squatter.getsockname()[1])
        t0 = time.monotonic()
        res = run_services("up", service, env=env, timeout=60)
        elapsed = time.monotonic() - t0
        try:
            assert res.returncode != 0
            assert elapsed < 30, f"took {elapsed:.1f}s to give up"
            lines = res.stderr.strip().splitlines()
            assert len(lines) == 1, res.stderr
            assert lines[0].startswith(
                f"services: {service}: port 127.0.0.1:{env[port_var]} is already in use"
            )
            status = run_services("status", service, env=env, timeout=60)
            assert status.returncode != 0
            assert status.stdout.startswith(f"{service}: stopped")
        finally:
            run_services("down", env=env, timeout=120)


def test_unknown_service_and_bad_port_are_rejected(tmp_path: Path) -> None:
    env = private_env(tmp_path / "run")
    res = run_services("up", "redis", env=env, timeout=30)
    assert res.returncode != 0 and res.stderr.startswith("services: redis: unknown service")
    res = run_services("up", "mosquitto", env={**env, "WS_MQTT_PORT": "99999"}, timeout=30)
    assert res.returncode != 0
    assert res.stderr.strip() == "services: mosquitto: WS_MQTT_PORT='99999' is not a valid TCP port"


def test_private_lifecycle_up_down_reset(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    env = private_env(run_dir)
    try:
        res = run_services("up", env=env)
        assert res.returncode == 0, res.stderr
        pids = read_pids(run_dir)
        for svc in SERVICES:
            assert (run_dir / svc).is_dir()
        assert (run_dir / "kafka" / "data" / "meta.properties").is_file()
        assert (run_dir / "kafka" / "logs" / "server.log").is_file()
        assert run_services("status", env=env, timeout=60).returncode == 0

        res = run_services("down", env=env, timeout=120)
        assert res.returncode == 0, res.stderr
        for svc, name in PID_FILES.items():
            assert not (run_dir / svc / name).exists()
        assert not [pid for pid in pids.values() if pid_alive(pid)]
        status = run_services("status", env=env, timeout=60)
        assert status.returncode == 3
        assert status.stdout.split() == ["mosquitto:", "stopped", "kafka:", "stopped", "influxdb:", "stopped"]
        assert run_services("down", env=env, timeout=60).returncode == 0  # down twice is fine

        res = run_services("reset", env=env, timeout=120)
        assert res.returncode == 0, res.stderr
        assert not (run_dir / "kafka" / "data").exists()
        assert not (run_dir / "influxdb" / "data").exists()
        assert (run_dir / "kafka" / "server.properties").is_file()  # config and logs are kept
    finally:
        run_services("down", env=env, timeout=120)


INFLUX18_BIN = REPO_ROOT / "deploy" / "local" / ".cache" / "influxdb-1.8.10" / "bin" / "influxd"


@pytest.mark.skipif(
    not (INFLUX18_BIN.parent.parent / ".built").is_file(),
    reason="InfluxDB 1.8 not built (WS_INFLUX_IMPL=1.8 deploy/local/services.sh up influxdb builds it)",
)
def test_influxdb_18_answers_v2_write_api(tmp_path: Path) -> None:
    env = {**private_env(tmp_path / "run"), "WS_INFLUX_IMPL": "1.8"}
    base = f"http://127.0.0.1:{env['WS_INFLUX_PORT']}"
    try:
        res = run_services("up", "influxdb", env=env, timeout=120)
        assert res.returncode == 0, res.stderr
        assert "v1.8.10" in res.stderr
        req = urllib.request.Request(f"{base}/query", data=b"q=CREATE+DATABASE+wastestream", method="POST")
        urllib.request.urlopen(req, timeout=10).close()
        req = urllib.request.Request(
            f"{base}/api/v2/write?bucket=wastestream/autogen&precision=s",
            data=b"fill_level,site=s1 pct=42.5 1700000000",
            headers={"Authorization": "Token :"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 204
        q = urllib.parse.urlencode({"db": "wastestream", "q": "SELECT pct FROM fill_level"})
        with urllib.request.urlopen(f"{base}/query?{q}", timeout=10) as r:
            values = json.loads(r.read())["results"][0]["series"][0]["values"]
        assert values == [["2023-11-14T22:13:20Z", 42.5]]
    finally:
        run_services("down", "influxdb", env=env, timeout=60)
