"""The bench's load generator against the real Mosquitto: every message arrives, valid and distinct.

The publisher drives paho from its own thread (wastestream/bench/mqttpub.py) and writes a tick's
messages in one burst; this checks what the bench's figures rely on: every acknowledged message
reaches a subscriber as a valid contract `Weighing` with its own msg id (seq 1, 2, ... per
device), `ts` is its send time (not the time a burst was queued long before), and the publisher
holds the rate it was asked for.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime

import paho.mqtt.client as mqtt

from contract.codec import decode
from contract.events import Weighing
from contract.msgid import parse_msg_id
from wastestream.bench.loadgen import LoadSpec, publish
from wastestream.foundation.mqtt import make_client
from wastestream.foundation.settings import load_settings


def test_loadgen_publishes_every_message_valid_distinct_and_stamped_at_send() -> None:
    settings = load_settings()
    root = f"wsbench/test-{uuid.uuid4().hex[:8]}"
    got: list[tuple[float, bytes]] = []
    lock = threading.Lock()
    subscribed = threading.Event()

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        with lock:
            got.append((time.time(), bytes(msg.payload)))

    sub = make_client(f"test-lg-sub-{uuid.uuid4().hex[:6]}")
    sub.on_message = on_message
    sub.on_subscribe = lambda *_a: subscribed.set()
    sub.connect(settings.mqtt_host, settings.mqtt_port, keepalive=30)
    sub.loop_start()
    try:
        sub.subscribe(f"{root}/#", qos=1)
        assert subscribed.wait(10)
        rate, seconds = 500.0, 4.0
        spec = LoadSpec(settings.mqtt_host, settings.mqtt_port, "tlgp0", devices=20, sites=2, rate=rate,
                        duration_s=seconds, start_at=time.time() + 0.5, topic_root=root)
        result = publish(spec)
        deadline = time.time() + 10
        while len(got) < result.acked and time.time() < deadline:
            time.sleep(0.05)
    finally:
        sub.disconnect()
        sub.loop_stop()

    assert result.sent == result.acked
    assert abs(result.sent - rate * seconds) <= 0.05 * rate * seconds
    assert len(got) == result.sent
    events = [(t, decode(p)) for t, p in got]
    assert all(isinstance(e, Weighing) for _, e in events)
    ids = [e.msg_id for _, e in events]
    assert len(set(ids)) == len(ids)
    per_device: dict[str, list[int]] = {}
    for msg_id in ids:
        device, epoch, seq = parse_msg_id(msg_id)
        assert epoch == 1
        per_device.setdefault(device, []).append(seq)
    assert len(per_device) == 20
    assert all(sorted(seqs) == list(range(1, len(seqs) + 1)) for seqs in per_device.values())
    # ts = send time: on loopback each message arrives within a fraction of a second of its stamp.
    ages = sorted(t - e.ts.timestamp() for t, e in events)
    assert ages[0] > -0.05 and ages[len(ages) // 2] < 0.1 and ages[-1] < 1.0
    assert all(e.ts.tzinfo is not None and e.ts <= datetime.now(UTC) for _, e in events)
