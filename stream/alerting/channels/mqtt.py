"""MQTT push for enforcement terminals: the alert document, QoS 1, on a per-severity topic.

The document's `text` is what a terminal displays (Chinese first, 北京时间, English second).

Topic template fields: `{severity}`, `{kind}`, `{site}` (default
`ws/v1/enforcement/alerts/{severity}`), so a terminal subscribes to what it handles, e.g.
`ws/v1/enforcement/alerts/critical`. A send counts as delivered when the broker has
acknowledged the PUBLISH (PUBACK); paho's blocking calls run in a worker thread.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

import paho.mqtt.client as mqtt

from stream.alerting.channels.base import Delivery, dumps
from stream.alerting.message import document
from wastestream.foundation.mqtt import MqttAuth, make_client


def topic_for(template: str, alert: dict[str, Any]) -> str:
    return template.format(severity=alert["severity"], kind=alert["kind"], site=alert["site_id"])


class MqttChannel:
    def __init__(self, name: str, host: str, port: int, topic: str, base_url: str, *, qos: int = 1,
                 username: str | None = None, password: str | None = None, tls: bool = False,
                 timeout_s: float = 10.0) -> None:
        self.name, self.topic, self.qos = name, topic, qos
        self._host, self._port, self._base_url, self._timeout = host, port, base_url, timeout_s
        self._auth, self._tls = (username, password), tls
        self._client: mqtt.Client | None = None
        self._lock = threading.Lock()

    def _connected_client(self) -> mqtt.Client:
        if self._client is not None and self._client.is_connected():
            return self._client
        self._drop()
        client = make_client(f"ws-alerts-{uuid.uuid4().hex[:8]}", MqttAuth(
            tls_system_ca=self._tls, username=self._auth[0] or "", password=self._auth[1]))
        connected = threading.Event()
        client.on_connect = lambda c, u, f, rc, p: connected.set() if not rc.is_failure else None
        client.connect(self._host, self._port, keepalive=30)
        client.loop_start()
        self._client = client
        if not connected.wait(self._timeout):
            self._drop()
            raise TimeoutError(f"no CONNACK from {self._host}:{self._port}")
        return client

    def _drop(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None

    def _publish(self, topic: str, body: bytes) -> Delivery:
        with self._lock:
            try:
                info = self._connected_client().publish(topic, body, qos=self.qos)
                info.wait_for_publish(self._timeout)
                if info.is_published():
                    return Delivery(True)
                error = f"not acknowledged within {self._timeout}s (rc {info.rc})"
            except (OSError, RuntimeError, ValueError) as exc:  # refused, timeouts, queue full
                error = f"{type(exc).__name__}: {exc}"
            self._drop()
            return Delivery(False, None, f"mqtt {self._host}:{self._port}: {error}"[:500])

    async def send(self, alert: dict[str, Any], evidence: list[str]) -> Delivery:
        body = dumps(document(alert, self._base_url, evidence))
        return await asyncio.to_thread(self._publish, topic_for(self.topic, alert), body)

    async def close(self) -> None:
        with self._lock:
            await asyncio.to_thread(self._drop)
