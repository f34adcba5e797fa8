"""A QoS 1 paho publisher that the publishing thread drives itself: no network thread.

Why (issue 14): the load generator used `loop_start()`, so paho's network thread read every
PUBACK while the publishing thread queued messages (each publish also woke that thread through
a socketpair); the two threads handed the GIL back and forth and the publisher cost ~160 µs of
CPU per message in the bench's table, a large share of the 2 cores the pipeline needs. Here one
thread does everything: `publish` only queues a packet, `pump` writes what is queued
(`loop_write`), reads every acknowledgement that has arrived (`loop_read`) and runs paho's
keepalive (`loop_misc`) once a second, as paho's external-loop API intends. paho's own inflight
limit is off (it scans the queued messages on every acknowledgement): the caller bounds its
unacknowledged messages itself. paho's per-packet `Properties` set-up is made cheap as in the
bridge (stream.paho_speedups).

A lost connection raises ConnectionError: a load generator that silently reconnected would
offer less than it claims.
"""

from __future__ import annotations

import select
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

from stream import paho_speedups
from wastestream.foundation.mqtt import make_client

MISC_INTERVAL_S = 1.0


class DrivenPublisher:
    """A connected paho client (MQTT 5, QoS 1) run from the calling thread; `on_ack(mid)` per PUBACK."""

    def __init__(self, client_id: str, host: str, port: int, on_ack: Callable[[int], None], *,
                 connect_timeout_s: float = 15.0) -> None:
        paho_speedups.apply()
        self.client = make_client(client_id)

        def on_publish(_c: mqtt.Client, _u: object, mid: int, _rc: object, _p: object) -> None:
            on_ack(mid)

        self.client.on_publish = on_publish
        self.client.max_inflight_messages_set(0)  # no limit in paho: the caller bounds its window
        self.client.max_queued_messages_set(0)
        # With a register-write callback, publish() only queues its packet; pump() writes the tick's.
        self.client.on_socket_register_write = _no_op
        self._last_misc = time.monotonic()
        self.client.connect(host, port, keepalive=30)
        deadline = time.monotonic() + connect_timeout_s
        while not self.client.is_connected():
            if time.monotonic() > deadline:
                raise ConnectionError(f"no CONNACK from {host}:{port} within {connect_timeout_s:.0f} s")
            self.pump(0.05)

    def publish(self, topic: str, payload: bytes, properties: Any = None) -> int:
        """Queue one QoS 1 message; its mid (`on_ack` gets it back). Sent by the next `pump`."""
        info = self.client.publish(topic, payload, qos=1, properties=properties)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise ConnectionError(f"publish refused: {mqtt.error_string(info.rc)}")
        return info.mid

    def pump(self, wait_s: float = 0.0) -> None:
        """Write what is queued; wait up to `wait_s` for bytes from the broker; read them all."""
        client = self.client
        sock = client.socket()
        if sock is None:
            raise ConnectionError("MQTT connection lost")
        now = time.monotonic()
        if now - self._last_misc >= MISC_INTERVAL_S:
            self._last_misc = now
            self._check(client.loop_misc())
        if client.want_write():
            self._check(client.loop_write())
        if wait_s > 0:
            select.select([sock], [], [], wait_s)
        self._check(client.loop_read())

    def close(self) -> None:
        """Send DISCONNECT and close the socket (unacknowledged messages are abandoned)."""
        if self.client.socket() is None:
            return
        self.client.disconnect()
        self.client.loop_write()

    @staticmethod
    def _check(rc: int) -> None:
        if rc != mqtt.MQTT_ERR_SUCCESS:
            raise ConnectionError(f"MQTT connection lost: {mqtt.error_string(rc)}")


def _no_op(*_args: object) -> None:
    pass
