"""Outage: broker stopped while devices produce, the agent killed -9 twice, everything restarted.

A private Mosquitto (persistence on) on a free loopback port, a simulated weighbridge on a pty
and a sorting station over Modbus TCP producing all the time, the agent as a subprocess, and
a subscriber with a persistent session at QoS 1. Timeline: run; stop the broker (SIGTERM);
kill -9 the agent in the outage and restart it; restart the broker; kill -9 the agent again
while it is replaying and restart it; let the devices finish; drain. The agent is killed just
after a truck left the weighbridge, as a serial indicator has no memory: a visit while no agent
listens is not seen by anyone (the station's drop ring does remember, and is caught up).

Produced = every seq the outbox allocated per device (its `seqs` table), cross-checked with the
simulators' ledgers. Delivered = distinct msg_ids at the subscriber; MQTT-level duplicates
(QoS 1 redelivery, replay after kill -9) are counted separately: downstream de-duplicates by
msg_id. Order: per device, first deliveries come in seq order.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from contract import decode
from contract.msgid import parse_msg_id
from firmware_sim.scenario import CommunitySpec, StationSpec
from firmware_sim.sorting_station import Drop, run_station_sim
from firmware_sim.weighbridge import LedgerEntry, TruckVisit, run_weighbridge

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

REPO = Path(__file__).resolve().parents[2]
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
COMMUNITY = CommunitySpec(id="cz-outage", name="t", district="chengzhong", households=80)
PLATES = [("桂B10001", 12000.0), ("桂B10002", 11000.0), ("桂B10003", 14000.0)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, up: bool, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            if up:
                return
        except OSError:
            if not up:
                return
        time.sleep(0.05)
    raise TimeoutError(f"port {port} not {'up' if up else 'down'}")


class Broker:
    """A private Mosquitto with persistence, so queued QoS 1 messages survive its restart."""

    def __init__(self, root: Path, port: int) -> None:
        self.port, self.conf, self.log = port, root / "mosquitto.conf", root / "mosquitto.log"
        data = root / "mosq"
        data.mkdir()
        user = "user root\n" if os.geteuid() == 0 else ""
        self.conf.write_text(
            f"{user}listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {data}/\nautosave_interval 1\nmax_queued_messages 100000\n"
            f"log_dest file {self.log}\nlog_type all\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)])
        wait_port(self.port, up=True)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)
            self.proc = None
            wait_port(self.port, up=False)


class Subscriber:
    """Persistent session (clean_start False, session expiry), QoS 1; records every delivery."""

    def __init__(self, port: int, site: str) -> None:
        self.deliveries: list[tuple[str, str, int, str]] = []  # (msg_id, device, seq, event)
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"outage-sub-{site}",
                                  protocol=mqtt.MQTTv5)
        self.client.reconnect_delay_set(1, 2)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(f"ws/v1/{site}/#", qos=1)
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 600
        self.client.connect("127.0.0.1", port, clean_start=False, properties=props)
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        event = decode(bytes(msg.payload))
        key = parse_msg_id(event.msg_id)
        with self.lock:
            self.deliveries.append((event.msg_id, key.device_id, key.seq, event.event))

    def snapshot(self) -> list[tuple[str, str, int, str]]:
        with self.lock:
            return list(self.deliveries)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class Devices:
    """The simulators on their own event loop in a thread, producing until `duration` has passed."""

    def __init__(self, dev: Path, station_port: int, duration: float) -> None:
        self.dev, self.station_port, self.duration = dev, station_port, duration
        self.tickets: list[LedgerEntry] = []
        self.drops: list[Drop] = []
        self.visit_done = threading.Condition()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def _sent(self, entry: LedgerEntry) -> None:
        with self.visit_done:
            self.tickets.append(entry)
            self.visit_done.notify_all()

    def wait_visit_done(self, timeout: float = 15) -> None:
        """Return just after a truck left the bridge: the start of a gap between visits."""
        with self.visit_done:
            n = len(self.tickets)
            assert self.visit_done.wait_for(lambda: len(self.tickets) > n, timeout)

    async def _run(self) -> None:
        visits = [TruckVisit(p, tare + 9000 + 400 * i, tare_kg=tare, rated_gross_kg=31000)
                  for i in range(int(self.duration / 6) + 1) for p, tare in [PLATES[i % 3]]]
        wb = run_weighbridge(self.dev / "wb-1", None, "toledo", visits, hz=10, lead_s=2, ramp_s=0.5,
                             stable_s=1.5, gap_s=4.0, on_sent=self._sent)
        station = run_station_sim(StationSpec(id="ss-1"), COMMUNITY, tcp_port=self.station_port,
                                  rate_per_min=40, seed=5, duration_s=self.duration, warmup_s=3,
                                  cooldown_s=4, on_drop=self.drops.append)
        await asyncio.gather(wb, station)


class AgentProcess:
    def __init__(self, config: Path, log: Path) -> None:
        self.config, self.log = config, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "edge.agent", "--config", str(self.config)],
                cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=fh, stderr=subprocess.STDOUT)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(5)

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return -9


def test_outage_kill9_exactly_once_in_order(tmp_path: Path) -> None:
    root = Path(tempfile.mkdtemp(prefix="ws-outage-"))  # the broker's data, outside pytest's tmp
    site = f"outage-{uuid.uuid4().hex[:6]}"
    broker = Broker(root, free_port())
    station_port = free_port()
    dev = tmp_path / "dev"
    dev.mkdir()
    outbox = tmp_path / "outbox.db"
    config = tmp_path / "site.yaml"
    (tmp_path / "household.key").write_text(uuid.uuid4().hex + uuid.uuid4().hex)
    config.write_text(yaml.safe_dump({
        "site_id": site,
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "session_expiry_s": 600, "keepalive": 5,
                 "delivery": "broker"},  # no bridge here: the broker's PUBACK is the delivery
        "outbox": {"path": str(outbox)},
        "household_key_file": str(tmp_path / "household.key"),
        "status_interval_s": 3,
        "vehicles": [{"plate": p, "tare_kg": t, "rated_gross_kg": 31000} for p, t in PLATES],
        "devices": [
            {"id": "wb-1", "port": str(dev / "wb-1"), "stable": {"tolerance_kg": 20, "hold_s": 0.6},
             "double_weigh_window_s": 1},
            {"id": "ss-1", "kind": "sorting_station", "community_id": COMMUNITY.id, "port": station_port,
             "poll_s": 0.3},
        ],
    }, allow_unicode=True))
    agent = AgentProcess(config, tmp_path / "agent.log")
    devices = Devices(dev, station_port, duration=36)
    broker.start()
    sub = Subscriber(broker.port, site)
    try:
        assert sub.subscribed.wait(5)
        devices.thread.start()
        agent.start()
        time.sleep(9)  # normal operation
        broker.stop()  # outage: devices keep producing into the outbox
        devices.wait_visit_done()
        agent.kill9()  # in the middle of the outage
        time.sleep(0.5)
        agent.start()
        time.sleep(5)
        broker.start()  # the agent and the subscriber reconnect to their persistent sessions
        time.sleep(0.3)
        devices.wait_visit_done()
        agent.kill9()  # while replaying / publishing with messages in flight
        agent.start()
        devices.thread.join(60)
        assert not devices.thread.is_alive()
        time.sleep(4)  # the last status heartbeat; the outbox drains
        assert agent.stop() == 0
        time.sleep(1)
    finally:
        with contextlib.suppress(Exception):
            if agent.proc is not None and agent.proc.poll() is None:
                agent.proc.kill()
        sub.close()
        broker.stop()
        shutil.rmtree(root, ignore_errors=True)

    deliveries = sub.snapshot()
    db = sqlite3.connect(outbox)
    produced_seqs = dict(db.execute("SELECT device_id, last_seq FROM seqs").fetchall())
    left = db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
    db.close()
    edge_device = f"{site}-edge"  # the agent's own online/will statuses bypass the outbox
    devices_ = [d for d in produced_seqs if d != edge_device]
    produced = sum(produced_seqs[d] for d in devices_)
    first: dict[str, tuple[str, int, str]] = {}
    for msg_id, device, seq, event in deliveries:
        if device != edge_device:
            first.setdefault(msg_id, (device, seq, event))
    delivered = len(first)
    duplicates = sum(1 for m, d, _, _ in deliveries if d != edge_device) - delivered
    lost = produced - delivered
    kinds = Counter(event for _, _, event in first.values())
    log = (tmp_path / "agent.log").read_text(encoding="utf-8", errors="replace")
    print(f"\noutage: produced {produced}, delivered unique {delivered}, duplicate deliveries {duplicates}, "
          f"lost {lost}; by event {dict(kinds)}; sim ledger: {len(devices.tickets)} weighings, "
          f"{len(devices.drops)} drops; outbox left {left}")

    assert left == 0
    for device in devices_:
        seqs = [seq for d, seq, _ in first.values() if d == device]  # first deliveries, in arrival order
        assert seqs == sorted(seqs), f"{device}: out of order"
        assert sorted(seqs) == list(range(1, produced_seqs[device] + 1)), f"{device}: missing seqs"
    assert lost == 0
    assert kinds["weighing"] == len(devices.tickets), log[-3000:]
    assert kinds["deposit"] == len(devices.drops), log[-3000:]
    assert "resuming after drop" in log  # the station's cursor came back from the outbox
    assert log.count("edge agent for") == 3
