"""Edge → broker → bridge → Kafka with pipeline confirmations (contract.acks), on the real services.

The loss this closes: a broker PUBACKs a message and then loses it (here: no subscriber exists yet,
as after a Mosquitto crash that lost the bridges' sessions; the chaos run's mosquitto window). With
`delivery: broker` the edge has already deleted it; with `delivery: pipeline` it re-sends until the
bridge confirms that Kafka has it. A private Mosquitto on a free port, so no other bridge of the
shared broker can take the messages first; Kafka is the shared local one.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from contract import Weighing, encode, mqtt_topic
from contract.acks import ack_subscription, ack_topic, decode_ack
from contract.events import Direction, WasteCategory
from contract.kafka_record import read_messages
from contract.topics import DEADLETTER_TOPIC
from edge.config import MqttConfig
from edge.mqtt_session import MqttSession
from edge.outbox import Outbox
from stream.bridge import Bridge, BridgeConfig
from tests.integration.test_bridge import end_offsets, read_since
from tests.integration.test_edge_outage import Broker, free_port
from wastestream.foundation.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

N = 12


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path, free_port())
    b.start()
    yield b
    b.stop()


def weighing_builder(site: str, device: str, net_kg: float = 18000.0):  # type: ignore[no-untyped-def]
    def build(msg_id: str, seq: int) -> bytes:
        return encode(Weighing(
            msg_id=msg_id, device_id=device, site_id=site, ts=datetime.now(UTC), ticket_id=f"T{seq}",
            plate="桂B12345", direction=Direction.INBOUND, gross_kg=30000.0, tare_kg=12000.0,
            net_kg=18000.0, category=WasteCategory.KITCHEN, origin="district-3",
        )).replace(b'"net_kg":18000.0', f'"net_kg":{net_kg}'.encode())
    return build


def wait_until(cond, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return bool(cond())


def start_session(broker: Broker, site: str, outbox: Outbox, delivery: str) -> MqttSession:
    cfg = MqttConfig(host="127.0.0.1", port=broker.port, delivery=delivery,  # type: ignore[arg-type]
                     confirm_timeout_s=1.0, session_expiry_s=600)
    session = MqttSession(cfg, site, outbox, status_kind="weighbridge")
    session.start()
    assert session.wait_connected(10)
    return session


async def bridge_while(broker: Broker, services: Settings, run: str, until, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    """Run a real bridge on the private broker until `until()` holds or `timeout` passes."""
    settings = dataclasses.replace(services, mqtt_host="127.0.0.1", mqtt_port=broker.port)
    bridge = Bridge(BridgeConfig(client_id=f"pd-bridge-{run}", group=f"pd{run}", settings=settings))
    task = asyncio.create_task(bridge.run())
    try:
        await bridge.wait_connected(15)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not until() and loop.time() < deadline:
            await asyncio.sleep(0.1)
        return bool(until())
    finally:
        bridge.stop()
        await asyncio.wait_for(task, 20)


def fill(outbox: Outbox, site: str, device: str, n: int) -> list[str]:
    topic = mqtt_topic(site, "weighbridge", device, "weighing")
    entries = [outbox.put(device, topic, weighing_builder(site, device)) for _ in range(n)]
    return [e.msg_id for e in entries if e is not None]


def msg_ids(records: list[tuple[str, bytes | None, bytes]]) -> list[str]:
    """Every message's msg_id: an event topic's record holds several (contract/kafka_record.py)."""
    return [m.msg_id for _, _, value in records for m in read_messages(value)]


@contextlib.contextmanager
def edge(broker: Broker, tmp_path: Path, delivery: str) -> Iterator[tuple[str, str, Outbox, MqttSession]]:
    """A fresh site's outbox and connected session; yields (site, device, outbox, session)."""
    run = uuid.uuid4().hex[:8]
    outbox = Outbox(tmp_path / f"{run}.db")
    site = f"p{delivery[0]}-{run}"
    session = start_session(broker, site, outbox, delivery)
    try:
        yield site, f"wb-{run}", outbox, session
    finally:
        session.stop(flush_timeout=1)
        outbox.close()


def test_pipeline_delivery_resends_what_the_broker_lost(
    broker: Broker, live_services: Settings, tmp_path: Path
) -> None:
    offsets = asyncio.run(end_offsets(["ws.weighings"]))
    with edge(broker, tmp_path, "pipeline") as (site, device, outbox, session):
        sent = fill(outbox, site, device, N)
        # The broker PUBACKs all of them and drops them: nobody subscribes yet.
        assert wait_until(lambda: session.unconfirmed == N, 10), session.unconfirmed
        assert outbox.depth() == N  # PUBACKed is not delivered: every row is kept
        drained = asyncio.run(bridge_while(broker, live_services, site, lambda: outbox.depth() == 0, 30))
        assert drained, f"outbox still holds {outbox.depth()} rows; re-sent {session.resent}"
        assert session.resent >= N
        assert session.unconfirmed == 0
        found = asyncio.run(read_since(offsets, N, site.encode(), timeout=15))
        assert set(msg_ids(found)) == set(sent)  # every one in Kafka (copies are the workers' to drop)


def test_broker_delivery_loses_what_the_broker_lost(
    broker: Broker, live_services: Settings, tmp_path: Path
) -> None:
    """The control: the same sequence with `delivery: broker` loses every message."""
    offsets = asyncio.run(end_offsets(["ws.weighings"]))
    with edge(broker, tmp_path, "broker") as (site, device, outbox, session):
        fill(outbox, site, device, N)
        assert wait_until(lambda: outbox.depth() == 0, 10)  # deleted on PUBACK
        asyncio.run(bridge_while(broker, live_services, site, lambda: False, 3))
        assert session.resent == 0
        assert asyncio.run(read_since(offsets, 1, site.encode(), timeout=3)) == []


def test_dead_lettered_messages_are_confirmed_too(
    broker: Broker, live_services: Settings, tmp_path: Path
) -> None:
    """An absurd ticket is in Kafka's dead-letter topic: the edge must stop re-sending it."""
    run = uuid.uuid4().hex[:8]
    site, device = f"pdl-{run}", f"wb-{run}"
    offsets = asyncio.run(end_offsets(["ws.weighings", DEADLETTER_TOPIC]))
    outbox = Outbox(tmp_path / "o.db")
    topic = mqtt_topic(site, "weighbridge", device, "weighing")
    good = outbox.put(device, topic, weighing_builder(site, device))
    bad = outbox.put(device, topic, weighing_builder(site, device, net_kg=9000.0))  # net != gross - tare
    assert good is not None and bad is not None

    async def scenario() -> bool:
        session = start_session(broker, site, outbox, "pipeline")
        try:
            return await bridge_while(broker, live_services, run, lambda: outbox.depth() == 0, 20)
        finally:
            session.stop(flush_timeout=1)

    assert asyncio.run(scenario()), f"{outbox.depth()} rows never confirmed"
    found = asyncio.run(read_since(offsets, 2, site.encode(), timeout=10))
    by_topic = {t for t, _, _ in found}
    assert by_topic == {"ws.weighings", DEADLETTER_TOPIC}
    outbox.close()


def test_only_messages_that_ask_are_confirmed(broker: Broker, live_services: Settings) -> None:
    """The Response Topic is the request: a publisher without one (a load generator, a device
    without an outbox) costs the bridge nothing, and the answer goes to the site the message
    came from, not to a topic the publisher names."""
    run = uuid.uuid4().hex[:8]
    site, device = f"prt-{run}", f"wb-{run}"
    got: list[tuple[str, list[str]]] = []
    watcher = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    watcher.on_message = lambda c, u, m: got.append((m.topic, decode_ack(bytes(m.payload))))
    watcher.connect("127.0.0.1", broker.port)
    watcher.subscribe(ack_subscription(), qos=1)
    watcher.loop_start()
    topic = mqtt_topic(site, "weighbridge", device, "weighing")
    asks, foreign, silent = (f"{device}:1:{seq}" for seq in (1, 2, 3))

    def payload(msg_id: str) -> bytes:
        return weighing_builder(site, device)(msg_id, int(msg_id.rsplit(":", 1)[1]))

    def props(response_topic: str) -> Properties:
        p = Properties(PacketTypes.PUBLISH)
        p.ResponseTopic = response_topic
        return p

    async def publish_all() -> bool:
        pub = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()
        for msg_id, p in ((asks, props(ack_topic(site))), (foreign, props(ack_topic("someone-else"))),
                          (silent, None)):
            pub.publish(topic, payload(msg_id), qos=1, properties=p).wait_for_publish(5)
        await asyncio.sleep(2)
        pub.loop_stop()
        pub.disconnect()
        return True

    try:
        asyncio.run(bridge_while(broker, live_services, site, lambda: False, 0.1))  # its session first
        settings = dataclasses.replace(live_services, mqtt_host="127.0.0.1", mqtt_port=broker.port)
        bridge = Bridge(BridgeConfig(client_id=f"pd-bridge-{site}", group=f"pd{site}", settings=settings))

        async def scenario() -> None:
            task = asyncio.create_task(bridge.run())
            try:
                await bridge.wait_connected(15)
                await publish_all()
            finally:
                bridge.stop()
                await asyncio.wait_for(task, 20)

        asyncio.run(scenario())
        assert wait_until(lambda: sum(len(ids) for _, ids in got) >= 2, 5)
        time.sleep(0.5)
    finally:
        watcher.loop_stop()
        watcher.disconnect()
    assert {t for t, _ in got} == {ack_topic(site)}
    assert sorted(i for _, ids in got for i in ids) == sorted([asks, foreign])
