"""The production broker config, run for real: TLS only, no anonymous, per-site roles, edge + bridge over TLS.

A private Mosquitto runs deploy/production/mosquitto/mosquitto.conf with only the `/mosquitto/`
paths, the plugin's path and the listener ports substituted (`localize_mosquitto_conf`, checked
by tests/unit/test_deploy.py), on a PKI from deploy/pki/make-pki.sh and the dynamic-security
accounts from make-accounts.sh (secrets generated here). Each security property is one test. The
last tests run the edge agent and the bridge over TLS to the real local Kafka.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pty
import re
import shutil
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import paho.mqtt.client as mqtt
import pytest
import yaml
from aiokafka import AIOKafkaConsumer, TopicPartition
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from contract import encode, mqtt_topic
from contract.codec import ContractError
from contract.events import DeviceState, DeviceStatus, Envelope
from contract.kafka_record import read_messages
from stream.topics_admin import ensure_topics
from wastestream.foundation.settings import REPO_ROOT, Settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

PROD = REPO_ROOT / "deploy" / "production"
MOSQUITTO_DIR = PROD / "mosquitto"
MAKE_PKI = REPO_ROOT / "deploy" / "pki" / "make-pki.sh"
MAKE_ACCOUNTS = MOSQUITTO_DIR / "make-accounts.sh"
NOT_AUTHORIZED = 135
BAD_CREDENTIALS = 134
# Where the eclipse-mosquitto image has the plugin (mosquitto.conf), and where Debian has it.
IMAGE_PLUGIN = "/usr/lib/mosquitto_dynamic_security.so"
DEBIAN_PLUGINS = "/usr/lib/*/mosquitto_dynamic_security.so"
# Service accounts of the test broker: the bridge process, the bridge_sub fixture, ad-hoc clients.
BRIDGE, BRIDGE_SUB, BRIDGE_ADHOC = "bridge-1", "bridge-2", "bridge-3"
SERVICES = (BRIDGE, BRIDGE_SUB, BRIDGE_ADHOC, "alerts", "officer")
# Not names at all: an option, topic wildcards and separators, a space, nothing.
INVALID = ["--service", "-x", "a/b", "+", "#", "x y", ""]
RESERVED = [
    "enforcement",
    "Enforcement-x",
    "bridge",
    "bridge-1",
    "Bridge-9",
    "bridge2",
    "alerts",
    "officer-2",
]


def local_plugin() -> str:
    """This machine's dynamic-security plugin (Debian's mosquitto package ships it)."""
    found = sorted(Path("/").glob(DEBIAN_PLUGINS.lstrip("/"))) or [Path(IMAGE_PLUGIN)]
    assert found[0].exists(), f"no mosquitto_dynamic_security.so ({DEBIAN_PLUGINS}): is mosquitto installed?"
    return str(found[0])


def localize_mosquitto_conf(
    text: str, root: Path, password_port: int, cert_port: int, plugin: str = IMAGE_PLUGIN
) -> str:
    """The production config with its /mosquitto/ tree under `root`, this machine's plugin and
    loopback ports: nothing else."""
    text = text.replace("/mosquitto/", f"{root}/")
    text, n0 = re.subn(rf"(?m)^plugin {re.escape(IMAGE_PLUGIN)}$", f"plugin {plugin}", text)
    assert n0 == 1, f"the production config must load the plugin from {IMAGE_PLUGIN}"
    text, n1 = re.subn(r"(?m)^listener 8883$", f"listener {password_port} 127.0.0.1", text)
    text, n2 = re.subn(r"(?m)^listener 8884$", f"listener {cert_port} 127.0.0.1", text)
    assert (n1, n2) == (1, 1), "the production config must have exactly the listeners 8883 and 8884"
    return text


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Broker:
    root: Path
    pki: Path
    secrets: Path
    port: int  # TLS + password
    cert_port: int  # mutual TLS
    site_a: str
    site_b: str
    log: Path
    plugin: str

    def secret(self, account: str) -> str:
        return (self.secrets / f"{account}.secret").read_text().strip()

    def client_cert(self, ident: str) -> tuple[str, str]:
        return str(self.pki / "clients" / f"{ident}.crt"), str(self.pki / "clients" / f"{ident}.key")


def _chown_tree(path: Path, user: str) -> None:
    for p in [path, *path.rglob("*")]:
        shutil.chown(p, user, user)


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    # No skip: `make test` installs mosquitto (deploy/local/packages.sh, tests/unit/test_setup.py).
    plugin = local_plugin()
    run = uuid.uuid4().hex[:6]
    site_a, site_b = f"sec-{run}-a", f"sec-{run}-b"
    # Not under pytest's tmp (mode 0700 parents): Mosquitto started as root drops to user mosquitto.
    root = Path(tempfile.mkdtemp(prefix="ws-security-"))
    pki, secrets = root / "pki", root / "client-secrets"
    env = {**os.environ, "WS_PKI_SERVER_NAMES": "mqtt.test.invalid"}
    subprocess.run(
        ["bash", str(MAKE_PKI), "--service", BRIDGE, str(pki), site_a, site_b],
        check=True,
        env=env,
        capture_output=True,
        timeout=30,
    )
    (root / "secrets").mkdir()
    (root / "config").mkdir()
    (root / "data").mkdir()
    services = [arg for name in SERVICES for arg in ("--service", name)]
    subprocess.run(
        [
            "bash",
            str(MAKE_ACCOUNTS),
            *services,
            str(secrets),
            str(root / "secrets" / "dynamic-security.json"),
            site_a,
            site_b,
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    for name in ("ca.crt", "server.crt", "server.key"):
        shutil.copy(pki / name, root / "secrets" / name)
    port, cert_port = free_port(), free_port()
    conf = root / "config" / "mosquitto.conf"
    conf.write_text(
        localize_mosquitto_conf((MOSQUITTO_DIR / "mosquitto.conf").read_text(), root, port, cert_port, plugin)
    )
    if os.geteuid() == 0:
        _chown_tree(root / "secrets", "mosquitto")
        _chown_tree(root / "config", "mosquitto")
        _chown_tree(root / "data", "mosquitto")
        os.chmod(root, 0o755)
    log = root / "mosquitto.log"
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [binary, "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 10
        while True:
            assert proc.poll() is None, f"mosquitto exited: {log.read_text()[-2000:]}"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                socket.create_connection(("127.0.0.1", cert_port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, f"mosquitto not listening: {log.read_text()[-2000:]}"
                time.sleep(0.1)
        yield Broker(root, pki, secrets, port, cert_port, site_a, site_b, log, plugin)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if os.environ.get("WS_KEEP_SECURITY_LOG"):
            shutil.copy(log, os.environ["WS_KEEP_SECURITY_LOG"])
        shutil.rmtree(root, ignore_errors=True)


# --- a small synchronous MQTT 5 client ----------------------------------------------------------


class Client:
    """paho MQTT 5 over TLS, with the outcomes (CONNACK, PUBACK, SUBACK codes, messages) recorded."""

    # Closed after each test, also a failed one: a client left running reconnects with paho's
    # loop and, its session being its account's, keeps kicking that account's later clients.
    opened: ClassVar[list[Client]] = []

    def __init__(
        self,
        b: Broker,
        *,
        username: str | None = None,
        password: str | None = None,
        cert: str | None = None,
        cert_files: tuple[str, str] | None = None,
        port: int | None = None,
        tls: bool = True,
        ca: str | None = None,
        protocol: MQTTProtocolVersion = mqtt.MQTTv5,
        client_id: str | None = None,
        session_expiry: int | None = None,
    ) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"sectest-{uuid.uuid4().hex[:8]}",
            protocol=protocol,
        )
        self.session_expiry = session_expiry  # None: a clean session; else resume (or keep) one
        Client.opened.append(self)
        self.port = port or b.port
        if tls:
            certfile, keyfile = cert_files or (b.client_cert(cert) if cert else (None, None))
            self.client.tls_set(ca_certs=ca or str(b.pki / "ca.crt"), certfile=certfile, keyfile=keyfile)
        if username is not None:
            self.client.username_pw_set(username, password)
        self.connack: ReasonCode | None = None
        self.session_present: bool | None = None
        self.connected = threading.Event()
        self.closed = threading.Event()
        self.pubacks: dict[int, int] = {}
        self.subacks: dict[int, list[int]] = {}
        self.messages: list[tuple[str, bytes]] = []
        self.group = ""  # the share group, for a bridge's subscriber
        self._event = threading.Condition()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *a: self.closed.set()
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    def _on_connect(self, _c: Any, _u: Any, flags: Any, reason: ReasonCode, _p: Any) -> None:
        self.connack = reason
        self.session_present = bool(flags.session_present)
        self.connected.set()

    def _on_publish(self, _c: Any, _u: Any, mid: int, reason: ReasonCode, _p: Any) -> None:
        with self._event:
            self.pubacks[mid] = reason.value
            self._event.notify_all()

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, reasons: list[ReasonCode], _p: Any) -> None:
        with self._event:
            self.subacks[mid] = [r.value for r in reasons]
            self._event.notify_all()

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._event:
            self.messages.append((msg.topic, bytes(msg.payload)))
            self._event.notify_all()

    def connect(self, timeout: float = 10) -> ReasonCode | None:
        """The CONNACK reason, or None when the connection failed before it (e.g. TLS handshake)."""
        options: dict[str, Any] = {}
        if self.session_expiry is not None:  # MQTT 5 only
            options["properties"] = Properties(PacketTypes.CONNECT)
            options["properties"].SessionExpiryInterval = self.session_expiry
            options["clean_start"] = False
        try:
            self.client.connect("localhost", self.port, keepalive=30, **options)
        except (OSError, ssl.SSLError):
            return None
        self.client.loop_start()
        deadline = time.monotonic() + timeout
        while not self.connected.is_set() and not self.closed.is_set() and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.connack

    def publish(self, topic: str, payload: bytes, timeout: float = 5) -> int:
        """Publish at QoS 1 and return the PUBACK reason code."""
        info = self.client.publish(topic, payload, qos=1)
        with self._event:
            assert self._event.wait_for(lambda: info.mid in self.pubacks, timeout), f"no PUBACK for {topic}"
            return self.pubacks[info.mid]

    def subscribe(self, topic: str, timeout: float = 5) -> list[int]:
        _, mid = self.client.subscribe(topic, qos=1)
        assert mid is not None
        with self._event:
            assert self._event.wait_for(lambda: mid in self.subacks, timeout), f"no SUBACK for {topic}"
            return self.subacks[mid]

    def wait_message(self, marker: bytes, timeout: float = 5) -> bool:
        with self._event:
            return self._event.wait_for(lambda: any(marker in p for _, p in self.messages), timeout)

    def received(self, markers: list[bytes], timeout: float = 5) -> int:
        """How many of `markers` arrived, waiting up to `timeout` for all of them."""

        def count() -> int:
            return sum(any(m in p for _, p in self.messages) for m in markers)

        with self._event:
            self._event.wait_for(lambda: count() == len(markers), timeout)
            return count()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def status_payload(site: str, device: str, marker: str) -> bytes:
    return encode(
        DeviceStatus(
            msg_id=f"{device}:1:{uuid.uuid4().hex[:6]}",
            device_id=device,
            site_id=site,
            ts=datetime.now(UTC),
            state=DeviceState.ONLINE,
            last_error=marker,
        )
    )


def topic(site: str, device: str = "wb-1") -> str:
    return mqtt_topic(site, "weighbridge", device, "device_status")


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while Client.opened:
        Client.opened.pop().close()


@pytest.fixture
def bridge_sub(broker: Broker) -> Iterator[Client]:
    """A subscriber with a bridge's credentials on a bridge share group of its own (`.group`)."""
    sub = Client(broker, username=BRIDGE_SUB, password=broker.secret(BRIDGE_SUB))
    assert sub.connect() == 0
    sub.group = f"sec{uuid.uuid4().hex[:6]}"
    assert sub.subscribe(f"$share/{sub.group}/ws/v1/+/+/+/+") == [1]
    yield sub
    sub.close()


# --- who may connect -----------------------------------------------------------------------------


def test_anonymous_clients_are_refused(broker: Broker) -> None:
    v5 = Client(broker)
    assert v5.connect() == NOT_AUTHORIZED
    v5.close()
    v311 = Client(broker, protocol=mqtt.MQTTv311)
    rc = v311.connect()
    assert rc is not None and rc.is_failure  # CONNACK 5 "not authorised"
    v311.close()


def test_plaintext_is_refused_on_the_tls_port(broker: Broker) -> None:
    plain = Client(broker, username=broker.site_a, password=broker.secret(broker.site_a), tls=False)
    assert plain.connect(timeout=3) is None  # no CONNACK: the broker only speaks TLS there
    plain.close()


def test_wrong_password_is_refused(broker: Broker) -> None:
    for user, password in [
        (broker.site_a, "not-the-password"),
        (broker.site_a, broker.secret(broker.site_b)),
        ("nobody", "x"),
    ]:
        c = Client(broker, username=user, password=password)
        assert c.connect() in (NOT_AUTHORIZED, BAD_CREDENTIALS), user
        c.close()
    ok = Client(broker, username=broker.site_a, password=broker.secret(broker.site_a))
    assert ok.connect() == 0
    ok.close()


def test_server_certificate_is_checked_by_clients(broker: Broker, tmp_path: Path) -> None:
    """A client that trusts another CA refuses our broker (and so would refuse an impostor)."""
    subprocess.run(
        ["bash", str(MAKE_PKI), str(tmp_path / "other")], check=True, capture_output=True, timeout=30
    )
    c = Client(
        broker,
        username=broker.site_a,
        password=broker.secret(broker.site_a),
        ca=str(tmp_path / "other" / "ca.crt"),
    )
    assert c.connect(timeout=3) is None
    c.close()


def test_mutual_tls_port_requires_a_certificate_of_our_ca(broker: Broker, tmp_path: Path) -> None:
    no_cert = Client(
        broker, port=broker.cert_port, username=broker.site_a, password=broker.secret(broker.site_a)
    )
    assert no_cert.connect(timeout=3) is None  # handshake fails: a password alone does not get in
    no_cert.close()
    subprocess.run(
        ["bash", str(MAKE_PKI), str(tmp_path / "rogue"), broker.site_a],
        check=True,
        capture_output=True,
        timeout=30,
    )
    rogue_dir = tmp_path / "rogue" / "clients"
    rogue = Client(
        broker,
        port=broker.cert_port,
        cert_files=(str(rogue_dir / f"{broker.site_a}.crt"), str(rogue_dir / f"{broker.site_a}.key")),
    )
    assert rogue.connect(timeout=3) is None  # same CN, wrong CA
    rogue.close()


# --- what a site may do --------------------------------------------------------------------------


def test_site_cannot_publish_as_another_site(broker: Broker, bridge_sub: Client) -> None:
    a = Client(broker, username=broker.site_a, password=broker.secret(broker.site_a))
    assert a.connect() == 0
    spoof = uuid.uuid4().hex.encode()
    own = uuid.uuid4().hex.encode()
    assert (
        a.publish(topic(broker.site_b), status_payload(broker.site_b, "wb-1", spoof.decode()))
        == NOT_AUTHORIZED
    )
    assert a.publish("ws/v1/enforcement/alerts/critical", spoof) == NOT_AUTHORIZED
    assert a.publish(topic(broker.site_a), status_payload(broker.site_a, "wb-1", own.decode())) == 0
    a.close()
    # Same publisher, in order: once its own message is through, the spoofed one would have been too.
    assert bridge_sub.wait_message(own)
    assert not any(spoof in p for _, p in bridge_sub.messages)


def test_site_cannot_publish_as_another_site_with_a_client_certificate(
    broker: Broker, bridge_sub: Client
) -> None:
    # The certificate's CN is the username; a username/password sent alongside is ignored.
    a = Client(broker, port=broker.cert_port, cert=broker.site_a, username=broker.site_b, password="ignored")
    assert a.connect() == 0
    spoof, own = uuid.uuid4().hex.encode(), uuid.uuid4().hex.encode()
    assert (
        a.publish(topic(broker.site_b), status_payload(broker.site_b, "wb-1", spoof.decode()))
        == NOT_AUTHORIZED
    )
    assert a.publish(topic(broker.site_a), status_payload(broker.site_a, "wb-1", own.decode())) == 0
    a.close()
    assert bridge_sub.wait_message(own)
    assert not any(spoof in p for _, p in bridge_sub.messages)


def test_site_may_subscribe_to_nothing_but_its_confirmations(broker: Broker, bridge_sub: Client) -> None:
    """Every SUBSCRIBE beyond ws/ack/v1/{site} is refused at SUBACK (135), and nothing is delivered."""
    a = Client(broker, username=broker.site_a, password=broker.secret(broker.site_a))
    assert a.connect() == 0
    refused = [
        "ws/v1/#",
        f"ws/v1/{broker.site_a}/#",
        "$share/x/ws/v1/#",
        "$share/bridge/ws/v1/+/+/+/+",
        "#",
        "$SYS/#",
        "ws/ack/v1/+",
        f"ws/ack/v1/{broker.site_b}",
        f"$share/x/ws/ack/v1/{broker.site_a}",
        "ws/v1/enforcement/#",
    ]
    assert {filt: a.subscribe(filt) for filt in refused} == {filt: [NOT_AUTHORIZED] for filt in refused}
    assert a.subscribe(f"ws/ack/v1/{broker.site_a}") == [1]
    b = Client(broker, username=broker.site_b, password=broker.secret(broker.site_b))
    assert b.connect() == 0
    marks = [uuid.uuid4().hex.encode() for _ in range(2)]
    assert b.publish(topic(broker.site_b), status_payload(broker.site_b, "wb-1", marks[0].decode())) == 0
    assert a.publish(topic(broker.site_a), status_payload(broker.site_a, "wb-1", marks[1].decode())) == 0
    assert bridge_sub.wait_message(marks[0]) and bridge_sub.wait_message(marks[1])
    time.sleep(0.3)
    assert a.messages == []
    a.close()
    b.close()


def test_hostile_site_in_the_bridges_share_group_takes_nothing(broker: Broker, bridge_sub: Client) -> None:
    """Issue 11, finding 2: a site joining the bridges' share group (online, and as an offline
    persistent session) got a share of the messages, which its read ACL then dropped after the
    edge's PUBACK. Now each such SUBSCRIBE is refused and the bridge receives all of them."""
    group = bridge_sub.group
    share_filters = [f"$share/{group}/ws/v1/+/+/+/+", f"$share/{group}/ws/v1/#", f"$share/{group}/#"]
    offline = Client(
        broker, username=broker.site_b, password=broker.secret(broker.site_b), session_expiry=3600
    )
    assert offline.connect() == 0
    assert [offline.subscribe(f) for f in share_filters] == [[NOT_AUTHORIZED]] * 3
    offline.close()  # its session (and any subscription it were granted) stays on the broker
    hostile = Client(broker, username=broker.site_a, password=broker.secret(broker.site_a))
    assert hostile.connect() == 0
    assert [hostile.subscribe(f) for f in share_filters] == [[NOT_AUTHORIZED]] * 3
    cert = Client(broker, port=broker.cert_port, cert=broker.site_b)  # and over mutual TLS
    assert cert.connect() == 0
    assert cert.subscribe(share_filters[0]) == [NOT_AUTHORIZED]
    marks = [uuid.uuid4().hex.encode() for _ in range(40)]
    for i, mark in enumerate(marks):
        payload = status_payload(broker.site_a, f"wb-{i}", mark.decode())
        assert hostile.publish(topic(broker.site_a, f"wb-{i}"), payload) == 0
    assert bridge_sub.received(marks, timeout=10) == len(marks)
    assert hostile.messages == [] and cert.messages == []
    hostile.close()
    cert.close()


def _intruders(broker: Broker, victim_ids: list[str], intruder: str) -> list[Client]:
    """`intruder`'s account connecting with each of the victim's client ids, with a clean start
    (that would wipe the victim's session) and resuming, over both ports."""
    clients = []
    for client_id in victim_ids:
        for expiry in (None, 3600):
            clients.append(
                Client(
                    broker,
                    username=intruder,
                    password=broker.secret(intruder),
                    client_id=client_id,
                    session_expiry=expiry,
                )
            )
            clients.append(
                Client(
                    broker, port=broker.cert_port, cert=intruder, client_id=client_id, session_expiry=expiry
                )
            )
    for c in clients:
        c.connect()  # refused, or connected to a session of its own: either way, not the victim's
        time.sleep(0.1)
    time.sleep(0.3)
    for c in clients:
        c.close()
    return clients


def test_bridge_session_cannot_be_taken_over(broker: Broker) -> None:
    """Issue 11, finding 3: a site connecting with the bridge's client id kicked the bridge and took
    (or wiped) its persistent session with the messages queued meanwhile."""
    ids = [f"ws-bridge-{BRIDGE_ADHOC}", BRIDGE_ADHOC]  # the bridge's own id, and its account's name

    def bridge() -> Client:
        return Client(
            broker,
            username=BRIDGE_ADHOC,
            password=broker.secret(BRIDGE_ADHOC),
            client_id=ids[0],
            session_expiry=3600,
        )

    online = bridge()
    assert online.connect() == 0
    group = f"sec{uuid.uuid4().hex[:6]}"
    assert online.subscribe(f"$share/{group}/ws/v1/+/+/+/+") == [1]
    _intruders(broker, ids, broker.site_a)
    assert not online.closed.is_set(), "an intruder kicked the bridge off"
    online.close()  # offline now: its session queues
    publisher = Client(broker, username=broker.site_b, password=broker.secret(broker.site_b))
    assert publisher.connect() == 0
    marks = [uuid.uuid4().hex.encode() for _ in range(10)]
    for i, mark in enumerate(marks):
        payload = status_payload(broker.site_b, f"wb-{i}", mark.decode())
        assert publisher.publish(topic(broker.site_b, f"wb-{i}"), payload) == 0
    publisher.close()
    intruders = _intruders(broker, ids, broker.site_a)
    assert all(c.messages == [] for c in intruders)
    back = bridge()
    assert back.connect() == 0 and back.session_present
    assert back.received(marks, timeout=10) == len(marks)  # no re-subscribe: the session kept everything
    back.close()


def test_site_session_cannot_be_taken_over(broker: Broker) -> None:
    """Likewise for a site's confirmations, queued while its edge agent is offline."""
    site = broker.site_a
    ids = [f"ws-edge-{site}", site]

    def edge() -> Client:
        return Client(
            broker, username=site, password=broker.secret(site), client_id=ids[0], session_expiry=3600
        )

    first = edge()
    assert first.connect() == 0 and first.subscribe(f"ws/ack/v1/{site}") == [1]
    first.close()
    bridge = Client(broker, username=BRIDGE_ADHOC, password=broker.secret(BRIDGE_ADHOC))
    assert bridge.connect() == 0
    marks = [uuid.uuid4().hex.encode() for _ in range(10)]
    for mark in marks:
        assert bridge.publish(f"ws/ack/v1/{site}", mark) == 0
    bridge.close()
    intruders = _intruders(broker, ids, broker.site_b)
    assert all(c.messages == [] for c in intruders)
    back = edge()
    assert back.connect() == 0 and back.session_present
    assert back.received(marks, timeout=10) == len(marks)
    back.close()


def test_site_reads_only_its_own_confirmations(broker: Broker) -> None:
    """The one read grant of a site: the bridges' confirmations of its own messages (ws/ack/v1/{site})."""
    a = Client(broker, username=broker.site_a, password=broker.secret(broker.site_a))
    bridge = Client(broker, username=BRIDGE_ADHOC, password=broker.secret(BRIDGE_ADHOC))
    assert a.connect() == 0 and bridge.connect() == 0
    assert a.subscribe(f"ws/ack/v1/{broker.site_a}") == [1]
    for filt in (f"ws/ack/v1/{broker.site_b}", "ws/ack/v1/+", "ws/ack/v1/#"):
        assert a.subscribe(filt) == [NOT_AUTHORIZED], filt
    own, other = uuid.uuid4().hex.encode(), uuid.uuid4().hex.encode()
    assert bridge.publish(f"ws/ack/v1/{broker.site_b}", other) in (0, 16)  # 16: no subscriber
    assert bridge.publish(f"ws/ack/v1/{broker.site_a}", own) == 0
    assert a.wait_message(own)
    time.sleep(0.3)
    assert not any(other in p for _, p in a.messages)
    assert a.publish(f"ws/ack/v1/{broker.site_a}", b"x") == NOT_AUTHORIZED  # cannot confirm to itself
    a.close()
    bridge.close()


def test_services_are_confined(broker: Broker) -> None:
    alerts = Client(broker, username="alerts", password=broker.secret("alerts"))
    officer = Client(broker, username="officer", password=broker.secret("officer"))
    assert alerts.connect() == 0 and officer.connect() == 0
    assert officer.subscribe("ws/v1/enforcement/#") == [1]
    assert officer.subscribe("ws/v1/#") == [NOT_AUTHORIZED]
    mark = uuid.uuid4().hex.encode()
    assert alerts.publish("ws/v1/enforcement/alerts/critical", mark) == 0
    assert officer.wait_message(mark)
    assert alerts.publish(topic(broker.site_a), b"x") == NOT_AUTHORIZED  # cannot pose as a device
    assert alerts.publish(f"ws/ack/v1/{broker.site_a}", b"x") == NOT_AUTHORIZED
    assert officer.publish("ws/v1/enforcement/alerts/critical", b"x") == NOT_AUTHORIZED
    bridge = Client(broker, username=BRIDGE_ADHOC, password=broker.secret(BRIDGE_ADHOC))
    assert bridge.connect() == 0
    assert bridge.publish(topic(broker.site_a), b"x") == NOT_AUTHORIZED
    assert bridge.publish("ws/v1/enforcement/alerts/critical", b"x") == NOT_AUTHORIZED
    for c in (alerts, officer, bridge):
        c.close()


def test_a_certificate_without_an_account_may_do_nothing(broker: Broker, bridge_sub: Client) -> None:
    """A client certificate of our CA whose CN has no account (e.g. made by hand for `enforcement`)
    logs in but is refused every publish and subscription: the roles are per account."""
    subprocess.run(
        ["bash", str(MAKE_PKI), str(broker.pki), "ghost"], check=True, capture_output=True, timeout=30
    )
    ghost = Client(broker, port=broker.cert_port, cert="ghost")
    assert ghost.connect() == 0
    mark = uuid.uuid4().hex.encode()
    assert ghost.publish(topic("ghost"), status_payload("ghost", "wb-1", mark.decode())) == NOT_AUTHORIZED
    assert ghost.publish("ws/v1/enforcement/alerts/critical", mark) == NOT_AUTHORIZED
    assert ghost.subscribe("#") == [NOT_AUTHORIZED]
    ghost.close()


@pytest.mark.parametrize("name", RESERVED + INVALID)
def test_make_accounts_refuses_reserved_names_for_sites(tmp_path: Path, name: str) -> None:
    """A site named `enforcement` could forge alerts, one named like a service would be that service."""
    done = subprocess.run(
        ["bash", str(MAKE_ACCOUNTS), str(tmp_path / "s"), str(tmp_path / "dynsec.json"), "site-ok", name],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and done.stderr.count("bad site name") == 1, done.stderr
    assert not (tmp_path / "dynsec.json").exists() and not (tmp_path / "s" / f"{name}.secret").exists()


@pytest.mark.parametrize("name", RESERVED + INVALID)
def test_make_pki_refuses_reserved_names_for_site_certificates(tmp_path: Path, name: str) -> None:
    """Issue 11, finding 11: make-pki.sh issued a certificate for `enforcement` (or `bridge`)."""
    done = subprocess.run(
        ["bash", str(MAKE_PKI), str(tmp_path / "pki"), "site-ok", name],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and done.stderr.count("bad site name") == 1, done.stderr
    assert not list((tmp_path / "pki").glob("clients/*.crt"))


def test_service_names_must_be_services(tmp_path: Path) -> None:
    """--service takes only a reserved name; and a legitimate service gets its certificate and account."""
    for script, out in (
        (MAKE_PKI, [str(tmp_path / "pki")]),
        (MAKE_ACCOUNTS, [str(tmp_path / "s"), str(tmp_path / "d.json")]),
    ):
        bad = subprocess.run(
            ["bash", str(script), "--service", "site-a", *out], capture_output=True, text=True, timeout=30
        )
        assert bad.returncode == 2 and "bad service name site-a" in bad.stderr, (script, bad.stderr)
        ok = subprocess.run(
            ["bash", str(script), "--service", "bridge-7", *out, "site-a"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert ok.returncode == 0, ok.stderr
    assert sorted(p.name for p in (tmp_path / "pki" / "clients").glob("*.crt")) == [
        "bridge-7.crt",
        "site-a.crt",
    ]
    config = json.loads((tmp_path / "d.json").read_text())
    roles = {c["username"]: [r["rolename"] for r in c["roles"]] for c in config["clients"]}
    assert roles == {"bridge-7": ["bridge"], "site-a": ["site:site-a"]}
    assert (tmp_path / "d.json").stat().st_mode & 0o077 == 0


def test_compose_healthcheck_command_works_against_this_broker(broker: Broker) -> None:
    """The broker's compose healthcheck: a TLS CONNECT without credentials is answered 'not authorised'."""
    compose = yaml.safe_load((PROD / "docker-compose.yml").read_text())
    test = compose["services"]["mosquitto"]["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL"
    cmd = test[1].replace("/mosquitto/", f"{broker.root}/").replace("-p 8883", f"-p {broker.port}")
    assert subprocess.run(["sh", "-c", cmd], timeout=15).returncode == 0
    stopped = cmd.replace(f"-p {broker.port}", f"-p {free_port()}")
    assert subprocess.run(["sh", "-c", stopped], timeout=15, capture_output=True).returncode != 0


# --- edge agent and bridge over TLS, end to end to Kafka -----------------------------------------


async def _end_offsets(bootstrap: str, topic_name: str) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        parts = [TopicPartition(topic_name, p) for p in consumer.partitions_for_topic(topic_name) or ()]
        return dict(await consumer.end_offsets(parts))
    finally:
        await consumer.stop()


async def _find(
    bootstrap: str, offsets: dict[TopicPartition, int], device_id: str, timeout: float,
    want: Callable[[Envelope], bool] = lambda m: True,
) -> Envelope | None:
    """The first contract message of `device_id` after `offsets` that `want`s (any record version:
    contract/kafka_record.py), or None."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        for tp, off in offsets.items():
            consumer.seek(tp, off)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=300)).values():
                for r in records:
                    with contextlib.suppress(ContractError):  # the topic is shared: others' records
                        for m in read_messages(r.value):
                            if m.device_id == device_id and want(m):
                                return m
        return None
    finally:
        await consumer.stop()


@pytest.fixture(scope="module")
def tls_bridge(broker: Broker, live_services: Settings) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m stream.bridge` with the TLS/credential flags, as production runs it."""
    asyncio.run(ensure_topics(live_services.kafka_bootstrap, live_services.kafka_partitions))
    run = uuid.uuid4().hex[:6]
    env = {k: v for k, v in os.environ.items() if not k.startswith("WS_MQTT_")}
    log = broker.root / "bridge.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "stream.bridge",
                "--client-id",
                f"sec-bridge-{run}",
                "--group",
                f"sec{run}",
                "--mqtt-host",
                "localhost",
                "--mqtt-port",
                str(broker.port),
                "--username",
                BRIDGE,
                "--password-file",
                str(broker.secrets / f"{BRIDGE}.secret"),
                "--tls-ca",
                str(broker.pki / "ca.crt"),
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 20
        while "subscribed to" not in log.read_text():
            assert proc.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, f"bridge did not connect: {log.read_text()[-2000:]}"
            time.sleep(0.1)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _confirmed_heartbeats(outbox: Path, device: str) -> bool:
    """Two heartbeats of `device` stored (seqs) and nothing left waiting (messages) in the outbox."""
    with contextlib.closing(sqlite3.connect(outbox, timeout=5)) as db:
        row = db.execute("SELECT last_seq FROM seqs WHERE device_id = ?", (device,)).fetchone()
        produced = 0 if row is None else row[0]
        waiting = db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
    return bool(produced >= 2 and waiting == 0)


@pytest.mark.parametrize("mode", ["password", "client-cert"])
def test_edge_agent_and_bridge_over_tls_to_kafka(
    broker: Broker, tls_bridge: subprocess.Popen[bytes], live_services: Settings, mode: str
) -> None:
    """`python -m edge.agent` (TLS in its site config) → broker → bridge (TLS flags) → ws.device-status."""
    site = broker.site_a
    master, slave = pty.openpty()  # the weighbridge's serial line: idle, the agent's own status is enough
    mqtt_cfg: dict[str, Any] = {"host": "localhost", "tls": {"ca_file": str(broker.pki / "ca.crt")}}
    if mode == "password":
        mqtt_cfg |= {
            "port": broker.port,
            "username": site,
            "password_file": str(broker.secrets / f"{site}.secret"),
        }
    else:
        crt, key = broker.client_cert(site)
        mqtt_cfg |= {"port": broker.cert_port}
        mqtt_cfg["tls"] |= {"cert_file": crt, "key_file": key}
    cfg = {
        "site_id": site,
        "mqtt": mqtt_cfg,
        "outbox": {"path": str(broker.root / f"outbox-{mode}.db")},
        "status_interval_s": 1,  # heartbeats go through the outbox: they wait for confirmations
        "devices": [{"id": f"wb-{mode}", "kind": "weighbridge", "port": os.ttyname(slave)}],
    }
    cfg_path = broker.root / f"site-{mode}.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    bootstrap = live_services.kafka_bootstrap
    offsets = asyncio.run(_end_offsets(bootstrap, "ws.device-status"))
    log = broker.root / f"edge-{mode}.log"
    with log.open("wb") as out:
        agent = subprocess.Popen(
            [sys.executable, "-m", "edge.agent", "--config", str(cfg_path)],
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        # The agent says `online` for itself ({site}-edge) on every connect (the previous mode's
        # agent, same site, may still be saying `stopped`: its planned stop).
        found = asyncio.run(_find(bootstrap, offsets, f"{site}-edge", timeout=20,
                                  want=lambda m: getattr(m, "state", None) != DeviceState.STOPPED))
        assert found is not None, f"no status in Kafka; edge log: {log.read_text()[-1500:]}"
        assert isinstance(found, DeviceStatus) and found.state == DeviceState.ONLINE
        # The bridge's confirmations reach the agent through the ACL: its heartbeats leave the outbox.
        outbox = broker.root / f"outbox-{mode}.db"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not _confirmed_heartbeats(outbox, f"wb-{mode}"):
            time.sleep(0.2)
        assert _confirmed_heartbeats(outbox, f"wb-{mode}"), f"never confirmed: {log.read_text()[-1500:]}"
    finally:
        agent.send_signal(signal.SIGTERM)
        try:
            agent.wait(15)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait(5)
        os.close(master)
        os.close(slave)
    assert "refused" not in log.read_text()
    assert tls_bridge.poll() is None
