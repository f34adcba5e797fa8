"""Publish imported tickets the way an edge does and wait until the pipeline has them.

Each message goes to `ws/v1/{site}/weighbridge/{device}/weighing` with QoS 1 and the MQTT 5
Response Topic `ws/ack/v1/{site}`, so the bridge validates it like live data and confirms
it once Kafka has it (contract/acks.py). What is not confirmed in `confirm_timeout_s` is sent
again (the workers de-duplicate by msg_id). Order matters to the de-duplication (stream/dedup.py:
a device's (epoch, seq) must reach Kafka nearly in order): a day's first ticket is sent alone,
then the rest in chunks well inside the dedup window, each chunk confirmed before the next.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from itertools import groupby

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from contract.acks import AckError, ack_topic, decode_ack
from contract.codec import encode
from contract.events import Weighing
from contract.msgid import parse_msg_id
from contract.topics import mqtt_topic
from stream.dedup import WINDOW
from wastestream.foundation.mqtt import MqttAuth, make_client
from wastestream.foundation.settings import Settings

log = logging.getLogger(__name__)
CHUNK = WINDOW // 2


class SendError(RuntimeError):
    pass


class Sender:
    def __init__(self, settings: Settings, client_id: str, confirm_timeout_s: float = 15.0,
                 attempts: int = 4) -> None:
        self.settings, self.confirm_timeout_s, self.attempts = settings, confirm_timeout_s, attempts
        self._confirmed: set[tuple[str, str]] = set()
        """(site, msg_id): device ids, and so msg_ids, are unique within a site only."""
        self._cond = threading.Condition()
        self._connected = threading.Event()
        self._client = make_client(client_id, MqttAuth.from_settings(settings))
        self._client.max_inflight_messages_set(200)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._sites: set[str] = set()

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object, reason: object,
                    properties: object) -> None:
        for site in self._sites:
            client.subscribe(ack_topic(site), qos=1)
        self._connected.set()

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        try:
            ids = decode_ack(bytes(message.payload))
        except AckError as exc:
            log.warning("ignored on %s: %s", message.topic, exc)
            return
        site = message.topic.rsplit("/", 1)[-1]
        with self._cond:
            self._confirmed.update((site, i) for i in ids)
            self._cond.notify_all()

    def __enter__(self) -> Sender:
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.loop_stop()
        self._client.disconnect()

    def connect(self, sites: set[str], timeout: float = 15.0) -> None:
        self._sites = set(sites)
        self._client.connect(self.settings.mqtt_host, self.settings.mqtt_port, keepalive=30)
        self._client.loop_start()
        if not self._connected.wait(timeout):
            raise SendError(f"no MQTT connection to {self.settings.mqtt_host}:{self.settings.mqtt_port}")
        time.sleep(0.3)  # the SUBACKs of the confirmation topics

    def _publish(self, events: Sequence[Weighing]) -> None:
        for e in events:
            props = Properties(PacketTypes.PUBLISH)
            props.ResponseTopic = ack_topic(e.site_id)
            self._client.publish(mqtt_topic(e.site_id, "weighbridge", e.device_id, e.event), encode(e),
                                 qos=1, properties=props)

    def send_confirmed(self, events: Sequence[Weighing]) -> None:
        """Publish `events` and wait until every one is confirmed; re-send the rest on timeout."""
        todo = [e for e in events if (e.site_id, e.msg_id) not in self._confirmed]
        for attempt in range(1, self.attempts + 1):
            self._publish(todo)
            deadline = time.monotonic() + self.confirm_timeout_s
            with self._cond:
                while (todo := [e for e in todo if (e.site_id, e.msg_id) not in self._confirmed]) and \
                        time.monotonic() < deadline:
                    self._cond.wait(0.2)
            if not todo:
                return
            log.warning("%d messages not confirmed in %.0f s (attempt %d): sending again", len(todo),
                        self.confirm_timeout_s, attempt)
        raise SendError(f"{len(todo)} messages never confirmed by the pipeline (is a bridge running?), "
                        f"e.g. {todo[0].msg_id}")

    def send_all(self, events: Sequence[Weighing], progress: Callable[[int], None] | None = None) -> None:
        """In msg_id order per device and day: the first alone, then chunks (module doc)."""
        done = 0

        def day_key(e: Weighing) -> tuple[str, str, int]:
            key = parse_msg_id(e.msg_id)
            return (e.site_id, e.device_id, key.epoch)

        ordered = sorted(events, key=lambda e: (day_key(e)[2], e.site_id, e.device_id,
                                                parse_msg_id(e.msg_id).seq))
        for _, group in groupby(ordered, key=day_key):
            day = list(group)
            chunks = [day[:1]] + [day[i:i + CHUNK] for i in range(1, len(day), CHUNK)]
            for chunk in chunks:
                self.send_confirmed(chunk)
                done += len(chunk)
                if progress:
                    progress(done)
