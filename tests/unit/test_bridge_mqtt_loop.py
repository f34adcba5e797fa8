"""The bridge with paho on its asyncio loop, against a tiny in-process MQTT 5 broker and a fake Kafka.

No network thread (no paho `loop_start`): reads, writes, keepalive and reconnects run on the loop.
Checked here: every message acked once Kafka acked it (and not before), acks of a lost connection
void (redelivered instead), reconnect with backoff, back-pressure at the high watermark, TLS
records holding several packets (bytes epoll cannot see), and a clean DISCONNECT on stop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
import struct
import subprocess
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from contract import encode, mqtt_topic
from stream import bridge as bridge_mod
from stream import mqtt_loop
from stream.bridge import Bridge, BridgeConfig
from stream.mqtt_loop import PahoOnLoop
from tests.integration.test_bridge import weighing
from wastestream.foundation.settings import load_settings

pytestmark = pytest.mark.timeout(60)


# --- a minimal MQTT 5 broker -----------------------------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def publish_packet(topic: str, payload: bytes, mid: int, qos: int = 1) -> bytes:
    t = topic.encode()
    body = struct.pack("!H", len(t)) + t + (struct.pack("!H", mid) if qos else b"") + b"\x00" + payload
    return bytes([0x30 | (qos << 1)]) + _varint(len(body)) + body


class Session:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.subscribed = asyncio.Event()
        self.closed = asyncio.Event()
        self.pubacks: list[int] = []
        self.disconnected = False

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    def drop(self) -> None:
        self.writer.transport.abort()


class FakeBroker:
    """Accepts MQTT 5 clients; records PUBACKs and DISCONNECTs; the test pushes PUBLISHes."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls
        self.sessions: list[Session] = []
        self.new_session = asyncio.Event()
        self.port = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> FakeBroker:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        for s in self.sessions:
            s.drop()

    async def session(self, n: int, timeout: float = 10) -> Session:
        """The n-th (1-based) session, once subscribed."""
        async def wait() -> Session:
            while len(self.sessions) < n:
                self.new_session.clear()
                await self.new_session.wait()
            await self.sessions[n - 1].subscribed.wait()
            return self.sessions[n - 1]
        return await asyncio.wait_for(wait(), timeout)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        s = Session(reader, writer)
        try:
            while True:
                head = (await reader.readexactly(1))[0]
                length, mult = 0, 1
                while True:
                    b = (await reader.readexactly(1))[0]
                    length += (b & 0x7F) * mult
                    mult *= 128
                    if not b & 0x80:
                        break
                body = await reader.readexactly(length)
                kind = head >> 4
                if kind == 1:  # CONNECT
                    writer.write(b"\x20\x03\x00\x00\x00")
                    self.sessions.append(s)
                    self.new_session.set()
                elif kind == 8:  # SUBSCRIBE
                    writer.write(b"\x90\x04" + body[:2] + b"\x00\x01")
                    s.subscribed.set()
                elif kind == 4:  # PUBACK
                    s.pubacks.append(struct.unpack("!H", body[:2])[0])
                elif kind == 12:  # PINGREQ
                    writer.write(b"\xd0\x00")
                elif kind == 14:  # DISCONNECT
                    s.disconnected = True
                    break
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            s.closed.set()
            writer.close()


# --- a fake Kafka producer -----------------------------------------------------------------------


class FakeProducer:
    """`send` returns a delivery future; acks at once (auto) or when the test says."""

    def __init__(self, auto: bool = True) -> None:
        self.auto = auto
        self.sent: list[tuple[str, bytes | None, bytes, asyncio.Future[Any]]] = []

    async def partitions_for(self, topic: str) -> set[int]:
        return {0, 1, 2, 3}

    async def send(self, topic: str, value: bytes, key: bytes | None = None,
                   partition: int | None = None) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.sent.append((topic, key, value, fut))
        if self.auto:
            fut.set_result(None)
        return fut

    def ack_all(self) -> None:
        for *_, fut in self.sent:
            if not fut.done():
                fut.set_result(None)

    async def flush(self) -> None:
        await asyncio.sleep(0)

    async def stop(self) -> None:
        pass


def make_bridge(monkeypatch: pytest.MonkeyPatch, port: int, producer: FakeProducer, **config: Any) -> Bridge:
    async def no_topics(*_a: Any) -> None:
        return None

    async def start_producer(_self: Bridge, _bootstrap: str) -> FakeProducer:
        return producer

    monkeypatch.setattr(bridge_mod, "ensure_topics", no_topics)
    monkeypatch.setattr(Bridge, "_start_producer", start_producer)
    settings = dataclasses.replace(load_settings(), mqtt_host="127.0.0.1", mqtt_port=port, mqtt_username="",
                                   mqtt_tls_ca="", mqtt_tls_cert="", mqtt_tls_key="")
    # one message per record: these tests are about the MQTT loop's acks and flow control
    # (batch records: tests/integration/test_bridge.py, tests/unit/test_kafka_record.py)
    config.setdefault("batch_records", False)
    return Bridge(BridgeConfig(client_id="unit-bridge", group="unit", settings=settings, **config))


async def rig(monkeypatch: pytest.MonkeyPatch, **config: Any) -> tuple[FakeBroker, FakeProducer, Bridge]:
    """A broker, a producer that acks when told, and a bridge between them."""
    broker = await FakeBroker().start()
    producer = FakeProducer(auto=False)
    return broker, producer, make_bridge(monkeypatch, broker.port, producer, **config)


async def until(cond: Callable[[], bool], timeout: float = 10) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def with_bridge(bridge: Bridge, body: Callable[[], Awaitable[None]]) -> None:
    task = asyncio.create_task(bridge.run())
    try:
        await bridge.wait_connected(10)
        await body()
    finally:
        bridge.stop()
        await asyncio.wait_for(task, 20)


TOPIC = mqtt_topic("site-a", "weighbridge", "wb-1", "weighing")


def payloads(n: int, start: int = 0) -> list[bytes]:
    return [encode(weighing("wb-1", i)) for i in range(start, start + n)]


# --- tests ---------------------------------------------------------------------------------------


def test_acks_after_kafka_in_one_thread_and_disconnects_cleanly(monkeypatch: pytest.MonkeyPatch) -> None:
    threads_before = {t.name for t in threading.enumerate()}

    async def scenario() -> None:
        broker, producer, bridge = await rig(monkeypatch)

        async def body() -> None:
            s = await broker.session(1)
            s.send(b"".join(publish_packet(TOPIC, p, mid) for mid, p in enumerate(payloads(500), 1)))
            s.send(publish_packet(TOPIC, b"{not json", 501))
            await until(lambda: len(producer.sent) == 501)
            await asyncio.sleep(0.1)
            assert s.pubacks == []  # nothing acked before Kafka acked it
            producer.ack_all()
            await until(lambda: len(s.pubacks) == 501)
            assert sorted(s.pubacks) == list(range(1, 502))
            assert [t for t, *_ in producer.sent].count("ws.deadletter") == 1
            paho_threads = {t.name for t in threading.enumerate()} - threads_before
            assert not any("paho" in name for name in paho_threads), paho_threads

        await with_bridge(bridge, body)
        assert broker.sessions[0].disconnected  # a DISCONNECT, not a dropped socket
        assert bridge.stats.acked == 501 and bridge.stats.rejected == 1
        await broker.close()

    asyncio.run(scenario())


def test_lost_connection_reconnects_and_voids_old_acks(monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        broker, producer, bridge = await rig(monkeypatch)

        async def body() -> None:
            first = await broker.session(1)
            first.send(b"".join(publish_packet(TOPIC, p, mid) for mid, p in enumerate(payloads(5), 1)))
            await until(lambda: len(producer.sent) == 5)
            first.drop()  # connection lost while Kafka has the messages in flight
            await asyncio.sleep(0.3)  # the bridge has seen the EOF; its reconnect waits 1 s
            producer.ack_all()  # the lost connection's acks are void: the broker redelivers
            await asyncio.sleep(0.05)  # delivery callbacks
            assert bridge.stats.acked == 0
            second = await broker.session(2, timeout=5)
            second.send(b"".join(publish_packet(TOPIC, p, mid) for mid, p in enumerate(payloads(5), 1)))
            await until(lambda: len(producer.sent) == 10)
            producer.ack_all()
            await until(lambda: len(second.pubacks) == 5)
            await asyncio.sleep(0.1)
            assert sorted(second.pubacks) == [1, 2, 3, 4, 5]  # each once: none left from the first
            assert bridge.stats.acked == 5

        await with_bridge(bridge, body)
        await broker.close()

    asyncio.run(scenario())


def test_reconnects_with_backoff_until_the_broker_is_back(monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        broker = await FakeBroker().start()
        port = broker.port
        await broker.close()  # nothing listening: connects are refused
        bridge = make_bridge(monkeypatch, port, FakeProducer())
        task = asyncio.create_task(bridge.run())
        await asyncio.sleep(1.5)  # a refused connect and a retry
        assert not task.done()
        back = FakeBroker()
        back.server = await asyncio.start_server(back._serve, "127.0.0.1", port)
        await back.session(1, timeout=10)
        bridge.stop()
        await asyncio.wait_for(task, 10)
        await back.close()

    asyncio.run(scenario())


def test_high_watermark_stops_reading_until_drained(monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        broker, producer, bridge = await rig(monkeypatch, high_watermark=100)

        async def body() -> None:
            s = await broker.session(1)
            # QoS 0: not bounded by Receive Maximum, only by the watermark.
            s.send(b"".join(publish_packet(TOPIC, p, 0, qos=0) for p in payloads(300)))
            await until(lambda: len(producer.sent) >= 100)
            await asyncio.sleep(0.3)
            assert bridge.stats.received == 100 and len(producer.sent) == 100  # paused: not reading
            producer.ack_all()  # in flight drained: reading resumes
            await until(lambda: bridge.stats.received >= 200)
            producer.ack_all()
            await until(lambda: bridge.stats.received == 300)
            producer.ack_all()

        await with_bridge(bridge, body)
        await broker.close()

    asyncio.run(scenario())


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    crt, key = tmp_path / "server.crt", tmp_path / "server.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                    "-keyout", str(key), "-out", str(crt)], check=True, capture_output=True, timeout=30)
    return crt, key


def test_tls_reads_every_packet_of_a_record(tls_files: tuple[Path, Path]) -> None:
    """Many small PUBLISHes in one TLS record: after the first, the rest sit decrypted in the SSL
    object where epoll cannot see them; the reader must keep going while `pending()`."""
    crt, key = tls_files
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(crt, key)

    async def scenario() -> None:
        broker = await FakeBroker(tls=server_ctx).start()
        loop = asyncio.get_running_loop()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="unit-tls", protocol=mqtt.MQTTv5,
                             manual_ack=True)
        client.tls_set(ca_certs=str(crt))
        net = PahoOnLoop(client, loop)
        got: list[int] = []

        def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
            net.message_delivered()
            got.append(msg.mid)
            client.ack(msg.mid, msg.qos)

        client.on_message = on_message
        client.on_connect = lambda c, *_: c.subscribe("#", qos=1)
        client.connect_async("localhost", broker.port)
        connection = asyncio.ensure_future(net.keep_connected())
        s = await broker.session(1)
        s.send(b"".join(publish_packet("t", b"x" * 10, mid) for mid in range(1, 201)))  # one record
        await until(lambda: len(s.pubacks) == 200, timeout=5)
        assert got == list(range(1, 201))
        net.stop()
        await connection
        await net.close()
        assert s.disconnected or await asyncio.wait_for(s.closed.wait(), 5)
        await broker.close()

    asyncio.run(scenario())


# --- the loop's own PUBLISH parsing (direct reads, issue 14) --------------------------------------


def publish_with_response_topic(topic: str, payload: bytes, mid: int, response_topic: str) -> bytes:
    """A QoS 1 PUBLISH with an MQTT 5 Response Topic property (0x08), as an edge agent sends."""
    t, rt = topic.encode(), response_topic.encode()
    props = b"\x08" + struct.pack("!H", len(rt)) + rt
    body = struct.pack("!H", len(t)) + t + struct.pack("!H", mid) + _varint(len(props)) + props + payload
    return b"\x32" + _varint(len(body)) + body


def test_direct_reads_take_packets_split_anywhere_and_mixed_with_others() -> None:
    """Packets cut into 7-byte pieces (each a read of its own), a PINGRESP between PUBLISHes, a
    two-byte remaining length, QoS 0 and 1, properties: each PUBLISH reaches `on_publish` whole
    and in order, paho handles the rest, and `ack_many` PUBACKs them."""
    async def scenario() -> None:
        broker = await FakeBroker().start()
        loop = asyncio.get_running_loop()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="unit-direct", protocol=mqtt.MQTTv5,
                             manual_ack=True)
        got: list[tuple[Any, ...]] = []
        net = PahoOnLoop(client, loop, on_publish=lambda *publish: got.append(publish))
        client.on_connect = lambda c, *_: c.subscribe("#", qos=1)
        client.connect_async("127.0.0.1", broker.port)
        connection = asyncio.ensure_future(net.keep_connected())
        s = await broker.session(1)
        big = b"y" * 300
        data = (publish_packet("a/b", b"one", 1) + b"\xd0\x00" + publish_packet("a/c", big, 0, qos=0)
                + publish_with_response_topic("a/d", b"three", 2, "ws/ack/v1/x"))
        for start in range(0, len(data), 7):
            s.send(data[start:start + 7])
            await s.writer.drain()
            await asyncio.sleep(0.005)
        await until(lambda: len(got) == 3)
        assert [g[:4] for g in got] == [("a/b", b"one", 1, 1), ("a/c", big, 0, 0), ("a/d", b"three", 2, 1)]
        assert got[0][4] is None and got[2][4] == "ws/ack/v1/x"
        net.ack_many([1, 2])
        await until(lambda: sorted(s.pubacks) == [1, 2])
        assert client.is_connected() and len(broker.sessions) == 1
        net.stop()
        await connection
        await net.close()
        await broker.close()

    asyncio.run(scenario())


def test_a_topic_that_is_not_utf8_is_dead_lettered_and_the_connection_kept(
        monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        broker, producer, bridge = await rig(monkeypatch)

        async def body() -> None:
            s = await broker.session(1)
            bad = publish_packet(TOPIC, payloads(1)[0], 1).replace(b"site-a", b"site\xffa", 1)
            s.send(bad + publish_packet(TOPIC, payloads(1, 1)[0], 2))
            await until(lambda: len(producer.sent) == 2)
            producer.ack_all()
            await until(lambda: sorted(s.pubacks) == [1, 2])
            assert [t for t, *_ in producer.sent] == ["ws.deadletter", "ws.weighings"]
            assert len(broker.sessions) == 1

        await with_bridge(bridge, body)
        await broker.close()

    asyncio.run(scenario())


def test_on_a_paho_version_not_checked_paho_reads_and_acks_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    """stream.paho_speedups only touches the paho versions it was read against; on another the
    bridge runs on paho's own read path and per-message acks, with the same guarantees."""
    monkeypatch.setattr("stream.paho_speedups.direct_io_checked", lambda _client: False)

    async def scenario() -> None:
        broker, producer, bridge = await rig(monkeypatch)

        async def body() -> None:
            s = await broker.session(1)
            s.send(b"".join(publish_packet(TOPIC, p, mid) for mid, p in enumerate(payloads(50), 1)))
            await until(lambda: len(producer.sent) == 50)
            await asyncio.sleep(0.1)
            assert s.pubacks == []
            producer.ack_all()
            await until(lambda: len(s.pubacks) == 50)
            assert sorted(s.pubacks) == list(range(1, 51))

        await with_bridge(bridge, body)
        assert bridge._net is not None and bridge._net.on_publish is None  # paho's path was used
        await broker.close()

    asyncio.run(scenario())


def _packed(**values: Any) -> bytearray:
    """PUBLISH properties as paho packs them (its Properties are the reference), length stripped."""
    props = Properties(PacketTypes.PUBLISH)
    for name, value in values.items():
        setattr(props, name, value)
    packed = bytearray(props.pack())
    _length, start = mqtt_loop._varint(packed, 0, len(packed))
    return packed[start:]


@pytest.mark.parametrize("values", [
    {},
    {"ResponseTopic": "ws/ack/v1/lz-1"},
    {"PayloadFormatIndicator": 1, "MessageExpiryInterval": 60, "ContentType": "application/json",
     "ResponseTopic": "ws/ack/v1/站点", "CorrelationData": b"\x00\xff" * 100, "UserProperty": ("k", "v"),
     "SubscriptionIdentifier": 300},
])
def test_the_response_topic_is_read_as_paho_reads_it(values: dict[str, Any]) -> None:
    raw = _packed(**values)
    assert mqtt_loop._response_topic(raw, 0, len(raw)) == values.get("ResponseTopic")


@pytest.mark.parametrize("raw", [
    _packed(TopicAlias=3),  # paho's path: the loop does not keep aliases
    _packed(ResponseTopic="a") + _packed(ResponseTopic="b"),  # twice: paho refuses it
    _packed(ResponseTopic="ws/ack/v1/x")[:-2],  # truncated
    bytearray(b"\x08\x00\x02\xff\xfe"),  # not UTF-8
    bytearray(b"\x21\x00\x10"),  # Receive Maximum: not a PUBLISH property
])
def test_properties_the_loop_does_not_walk_go_to_paho(raw: bytearray) -> None:
    with pytest.raises(ValueError):
        mqtt_loop._response_topic(raw, 0, len(raw))
