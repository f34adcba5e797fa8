"""MQTT → Kafka bridge: at-least-once, validated, keyed by device.

A message is acknowledged to Mosquitto (QoS 1, manual ack) only after Kafka has
acknowledged it (acks=all), either on its event topic or, if invalid, on the
dead-letter topic. The MQTT session is persistent (clean_start False, session
expiry), so messages published while the bridge is down wait in the broker.
Several bridges share the load through an MQTT 5 shared subscription.

Valid messages travel in batches (issue 14): per Kafka topic and partition, the messages that
arrive within `linger_s` (WS_BRIDGE_LINGER_MS) go into ONE version-2 record (contract.kafka_record,
MessagePack), at most `contract.kafka_record.MAX_MESSAGES` or `MAX_RECORD_BYTES`. The partition is
the one Kafka's default partitioner (murmur2) gives the message's `site/device` key, as when each
message was its own record: a device's messages stay on one partition in their order, and every
table keyed like its source topic stays co-partitioned. A record's messages are acked to MQTT
and confirmed to the edge once Kafka has that record. A record Kafka refuses for good is split:
each of its messages is sent alone (its original JSON, a version-1 record), and only one that is
refused again is dead-lettered. Invalid messages go to the dead-letter topic one per record.

Then it confirms to the edge (contract.acks), for messages whose MQTT 5 Response Topic asks for it:
the msg_ids Kafka now holds are published on `ws/ack/v1/{site}`, gathered for `confirm_delay_s` so
one confirmation covers a burst. The edge keeps each message until confirmed, so a broker that loses
a message after its PUBACK (a crash, or a restart before the bridges are back) costs a re-send, not
the message.

One thread: paho runs on the asyncio loop (stream.mqtt_loop: socket reader/writer, loop_misc,
reconnect with backoff; only the blocking TCP/TLS connect runs in an executor), with no wake-up
byte or GIL hand-off to a network thread. The hot path is synchronous (issue 14: the bridge's CPU
per message): the loop parses each PUBLISH and calls `_on_publish`, which validates the message
and adds it to its partition's batch at once; only whole records (and single records: dead
letters) go, in the order they were closed, through one sender task that awaits the producer.
Once Kafka has a record, its messages' PUBACKs are queued as one write (`PahoOnLoop.ack_many`).
The socket is read at most every `read_interval_s` (20 ms), so each read takes a burst.
In-flight messages are bounded by the MQTT 5 Receive Maximum we announce (the broker stops
sending when that many are unacked) and, for QoS 0 traffic, by a high watermark at which we stop
reading the socket until Kafka has taken half of them.

Security (production broker): TLS when a CA file is configured (the broker's name is checked
against its certificate), username/password (the password read from a file or env var when the
client is made), or a client certificate for the broker's mutual-TLS listener. Each comes from
the settings (WS_MQTT_*) and can be overridden by a flag; see `main`.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import gc
import logging
import signal
import socket
import sys
import traceback
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import paho.mqtt.client as mqtt
from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    InvalidMessageError,
    InvalidTimestampError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)
from aiokafka.partitioner import murmur2
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from contract.acks import MAX_IDS_PER_ACK, ack_topic, encode_ack
from contract.events import Envelope
from contract.kafka_record import MAX_MESSAGES, MAX_RECORD_BYTES, encode_message, frame_record
from contract.topics import DEADLETTER_TOPIC, KAFKA_TOPICS, MQTT_SHARE_GROUP, shared_subscription
from stream import metrics, paho_speedups
from stream.deadletter import PAYLOAD_PREFIX_BYTES, deadletter_record
from stream.logutil import RateLimitedLog
from stream.mqtt_loop import PahoOnLoop
from stream.topics_admin import ensure_topics
from stream.validation import Rejection, validate
from wastestream.foundation import cliutil, eventloop, logs
from wastestream.foundation.mqtt import MqttAuth, make_client
from wastestream.foundation.settings import Settings, load_settings

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 24 * 3600
"""How long Mosquitto keeps our session (and queues for it) while the bridge is down."""


@dataclass
class BridgeStats:
    received: int = 0
    routed: int = 0
    rejected: int = 0
    acked: int = 0
    confirmed: int = 0
    kafka_retries: int = 0


class Inbound(NamedTuple):
    """One MQTT message as the bridge took it, and which connection must ack it (a tuple: one is
    made per message)."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int
    confirm: bool
    """The publisher asked for a pipeline confirmation (a Response Topic, contract.acks)."""


class Outbound(NamedTuple):
    """One message on its way to Kafka, and whom to confirm it to once it is there."""

    item: Inbound
    topic: str
    key: bytes | None
    value: bytes
    site_id: str | None
    msg_id: str | None
    reason: str | None = None
    """Why it goes to the dead-letter topic; None when routed to its event topic."""
    refusals: int = 0
    """How often Kafka refused this message's records for good (see `Bridge._refused`)."""
    message: Envelope | None = None
    """The decoded message, which goes into a batch record; None: sent alone as `value`."""


@dataclass
class _Batch:
    """The messages gathered for one topic partition's next record."""

    topic: str
    partition: int
    outs: list[Outbound] = field(default_factory=list)
    encoded: list[bytes] = field(default_factory=list)
    """Each message of `outs` as it goes into the record (contract.kafka_record.encode_message)."""
    size: int = 16
    """Bytes of the record so far (the frame's few bytes included)."""


PARTITION_CACHE_KEYS = 200_000
"""Device keys whose partition is remembered per topic (murmur2 in Python costs ~3 us; devices
repeat); past this the cache starts over."""


REFUSED_FOR_GOOD = (MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError,
                    InvalidMessageError, InvalidTimestampError)
"""Kafka errors about the record itself, which no retry changes. Others aiokafka calls not
retriable (KafkaTimeoutError, BrokerNotAvailableError, ProducerClosed, authorisation) come from
an outage or a configuration: the message is kept and retried, never dead-lettered for them."""

_internal_errors = RateLimitedLog(log, per_interval=5)


def _for_good(exc: BaseException) -> bool:
    """Kafka refused the record itself (or something not Kafka's failed): no retry changes it."""
    return isinstance(exc, REFUSED_FOR_GOOD) or not isinstance(exc, KafkaError)


def prepare(item: Inbound) -> Outbound:
    """Where one message goes: its event topic, or the dead-letter topic with the reason.

    Never raises (issue 11: one message whose check raised killed every bridge, and again on each
    redelivery): anything unexpected dead-letters this message as an internal error, logged with
    its traceback (rate-limited), and the bridge goes on. Pure but for that log line."""
    try:
        result = validate(item.topic, item.payload)
        if isinstance(result, Rejection):
            record = deadletter_record(result.reason, item.topic, item.payload)
            return Outbound(item, DEADLETTER_TOPIC, None, record, result.site_id, result.msg_id,
                            result.reason)
        return Outbound(item, result.kafka_topic, result.key, result.payload, result.site_id,
                        result.msg_id, message=result.message)
    except Exception as exc:
        return _internal_error(item, exc)


def _internal_error(item: Inbound, exc: Exception) -> Outbound:
    try:
        reason = f"internal error: {type(exc).__name__}: {exc}"
        _internal_errors.warning("message on %.200s dead-lettered after an internal error: %.1000s\n%s",
                                 item.topic, reason, traceback.format_exc(limit=20))
        return Outbound(item, DEADLETTER_TOPIC, None, deadletter_record(reason, item.topic, item.payload),
                        None, None, reason)
    except Exception:  # even the record could not be made (e.g. at the recursion limit): the bare facts
        reason = f"internal error: {type(exc).__name__}"
        return Outbound(item, DEADLETTER_TOPIC, None, _bare_record(reason, len(item.payload)), None, None,
                        reason)


def _bare_record(reason: str, size: int) -> bytes:
    return b'{"reason":"%s","payload_bytes":%d,"truncated":true}' % (reason.encode("ascii", "replace"), size)


@dataclass
class BridgeConfig:
    client_id: str
    group: str = MQTT_SHARE_GROUP
    receive_maximum: int = 1000
    """Unacked QoS 1 messages the broker may send us at once: the in-flight bound."""
    high_watermark: int = 5000
    """Pending messages (incl. QoS 0) at which we stop reading the MQTT socket."""
    retry_backoff_max_s: float = 5.0
    edge_confirmations: bool = True
    """Publish pipeline confirmations to the edge agents (contract.acks)."""
    confirm_delay_s: float = 0.05
    """How long delivered msg_ids are gathered into one confirmation per site."""
    batch_records: bool = True
    """Valid messages go to Kafka in batch records (contract.kafka_record); False: one JSON
    record per message (version 1), as before issue 14."""
    linger_s: float | None = None
    """How long a partition's batch waits to fill; None: the settings' WS_BRIDGE_LINGER_MS."""
    read_interval_s: float = 0.02
    """The MQTT socket is read at most this often (stream.mqtt_loop `read_interval_s`): each read
    then takes a burst, which costs less CPU per message (about 15 % less at 2,000-5,000 msg/s
    than reading as each message comes), for a few ms more latency next to the batch linger."""
    settings: Settings = field(default_factory=load_settings)


class Bridge:
    """One bridge process; `run()` until `stop()` (or a signal) and then drain cleanly."""

    def __init__(self, config: BridgeConfig) -> None:
        paho_speedups.apply()  # paho's per-PUBLISH Properties set-up: a third of our CPU per message
        self.config = config
        self.stats = BridgeStats()
        self._in_flight = 0  # taken from MQTT, not yet acked
        self._generation = 0  # bumped on every CONNACK and every lost socket: acks for another are void
        self._stopping = False
        self._stop_requested = asyncio.Event()
        self._connected = asyncio.Event()
        self._stopped = asyncio.Event()
        self._retry_tasks: set[asyncio.Task[None]] = set()
        self._rejects = RateLimitedLog(log)
        self._net: PahoOnLoop | None = None
        self._producer: AIOKafkaProducer | None = None
        self._confirm: dict[str, list[str]] = {}  # site -> msg_ids in Kafka, not yet confirmed
        self._confirm_timer: asyncio.TimerHandle | None = None
        self._batches: dict[tuple[str, int], _Batch] = {}
        self._batch_timer: asyncio.TimerHandle | None = None
        self._partitions: dict[str, int] = {}  # topic -> partition count (from the producer's metadata)
        self._partition_of_key: dict[str, dict[bytes, int]] = {}  # topic -> key -> partition
        self._outbox: collections.deque[_Batch | Outbound] = collections.deque()
        """Closed records and single messages, in order, for the sender task (`_sender`)."""
        self._outbox_ready = asyncio.Event()
        self._outbox_closed = False  # shutting down: the sender ends once the outbox is empty
        self._client = self._make_client()

    # --- paho callbacks (on the loop, from loop_read/loop_write/loop_misc) ------------------

    def _make_client(self) -> mqtt.Client:
        auth = MqttAuth.from_settings(self.config.settings)
        client = make_client(self.config.client_id, auth, manual_ack=True)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        return client

    def _on_connect(self, client: mqtt.Client, _ud: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            log.error("MQTT connect refused: %s", reason)
            return
        self._generation += 1
        if self._net is not None:
            self._net.connected()
        # Re-subscribing is harmless when the session was resumed, and needed when it expired.
        client.subscribe(shared_subscription(self.config.group), qos=1)
        log.info("MQTT connected (session present: %s); subscribed to %s",
                 _flags.session_present, shared_subscription(self.config.group))
        self._connected.set()

    def _on_disconnect(self, _c: mqtt.Client, _ud: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if not self._stopping:
            log.warning("MQTT disconnected (%s)", reason)

    def _on_socket_closed(self) -> None:
        self._generation += 1  # the broker redelivers what this connection did not ack

    def _on_message(self, _c: mqtt.Client, _ud: Any, msg: mqtt.MQTTMessage) -> None:
        """A PUBLISH paho parsed (a paho version stream.paho_speedups was not checked against)."""
        assert self._net is not None
        self._net.message_delivered()
        response_topic = getattr(msg.properties, "ResponseTopic", None)
        self._on_publish(msg.topic, bytes(msg.payload), msg.mid, msg.qos, response_topic)

    def _on_publish(self, topic: str, payload: bytes, mid: int, qos: int, response_topic: str | None) -> None:
        """One message from MQTT, taken at once: validated, batched or queued for Kafka."""
        if self._stopping:
            return  # not acked: the persistent session redelivers it after restart
        self._take(Inbound(topic, payload, mid, qos, self._generation, response_topic is not None))
        if self._in_flight >= self.config.high_watermark:
            assert self._net is not None
            self._net.pause_reading()  # resumed below half (`_maybe_resume`)

    def _maybe_resume(self) -> None:
        net = self._net
        if net is not None and net.paused and (
                self._in_flight < self.config.high_watermark // 2 or self._stopping):
            net.resume_reading()

    # --- asyncio side ---------------------------------------------------------------

    async def run(self) -> None:
        settings = self.config.settings
        loop = asyncio.get_running_loop()
        self._net = PahoOnLoop(self._client, loop, min_delay=1.0, max_delay=10.0, on_publish=self._on_publish,
                               read_interval_s=self.config.read_interval_s)
        self._net.on_closed = self._on_socket_closed
        await ensure_topics(settings.kafka_bootstrap, settings.kafka_partitions)
        self._producer = await self._start_producer(settings.kafka_bootstrap)
        for topic in KAFKA_TOPICS.values():  # the hot path looks partitions up without awaiting
            self._partitions[topic] = len(await self._producer.partitions_for(topic))
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        props.ReceiveMaximum = self.config.receive_maximum
        self._client.connect_async(
            settings.mqtt_host, settings.mqtt_port, keepalive=30, clean_start=False, properties=props
        )
        gc.freeze()  # what start-up made lives as long as we do: collections need not walk it again
        connection = asyncio.ensure_future(self._net.keep_connected())
        sender = asyncio.ensure_future(self._sender())
        try:
            await self._stop_requested.wait()
        finally:
            await self._shutdown(connection, sender)

    @property
    def _linger_s(self) -> float:
        linger = self.config.linger_s
        return self.config.settings.bridge_linger_ms / 1000 if linger is None else linger

    async def _start_producer(self, bootstrap: str) -> AIOKafkaProducer:
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            enable_idempotence=True,
            # the bridge's own batches have lingered already (`_linger_s`); single records not
            linger_ms=2 if self.config.batch_records else self.config.settings.kafka_linger_ms,
            max_batch_size=256 * 1024,
            client_id=f"ws-bridge-{self.config.client_id}",
        )
        await producer.start()
        return producer

    async def wait_connected(self, timeout: float = 10.0) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout)

    def stop(self) -> None:
        """Stop taking messages; `run()` then flushes Kafka, acks and disconnects."""
        self._stopping = True
        self._stop_requested.set()

    def _take(self, item: Inbound) -> None:
        """Validate one message and put it on its way (synchronous: nothing here waits)."""
        self.stats.received += 1
        metrics.bridge_received()
        out = prepare(item)
        if out.reason is None:
            self.stats.routed += 1
        else:
            self.stats.rejected += 1
            self._rejects.warning("rejected message on %.200s: %.1000s", item.topic, out.reason,
                                  extra=logs.topic_fields(item.topic))
        self._in_flight += 1
        if out.message is not None and out.key is not None and self.config.batch_records:
            self._add_to_batch(out)
        else:
            self._queue(out)

    def _partition_of(self, topic: str, key: bytes) -> int:
        """The partition Kafka's default partitioner gives `key` (murmur2, as aiokafka and Java)."""
        known = self._partition_of_key.get(topic)
        if known is None or len(known) >= PARTITION_CACHE_KEYS:
            known = self._partition_of_key[topic] = {}
        partition = known.get(key)
        if partition is None:
            partition = known[key] = (murmur2(key) & 0x7FFFFFFF) % self._partitions[topic]
        return partition

    def _add_to_batch(self, out: Outbound) -> None:
        assert out.message is not None and out.key is not None
        partition = self._partition_of(out.topic, out.key)
        encoded = encode_message(out.message)
        size = len(encoded) + 1
        batch = self._batches.get((out.topic, partition))
        if batch is not None and batch.size + size > MAX_RECORD_BYTES:
            self._close(batch)
            batch = None
        if batch is None:
            batch = self._batches[(out.topic, partition)] = _Batch(out.topic, partition)
            if self._batch_timer is None:
                self._batch_timer = asyncio.get_running_loop().call_later(self._linger_s, self._flush_due)
        batch.outs.append(out)
        batch.encoded.append(encoded)
        batch.size += size
        if len(batch.outs) >= MAX_MESSAGES:
            self._close(batch)

    def _flush_due(self) -> None:
        """The linger is over: every open batch becomes a record."""
        self._batch_timer = None
        self._close_all()

    def _close_all(self) -> None:
        for batch in list(self._batches.values()):
            self._close(batch)

    def _close(self, batch: _Batch) -> None:
        """`batch` takes no more messages: it is the next record for the sender."""
        del self._batches[(batch.topic, batch.partition)]
        self._queue(batch)

    def _queue(self, item: _Batch | Outbound) -> None:
        self._outbox.append(item)
        self._outbox_ready.set()

    async def _sender(self) -> None:
        """Hands records and single messages to the producer in the order they were queued, so a
        partition's records (and a device's single records) keep their order."""
        while True:
            if not self._outbox:
                if self._outbox_closed:
                    return
                self._outbox_ready.clear()
                await self._outbox_ready.wait()
                continue
            item = self._outbox.popleft()
            if isinstance(item, _Batch):
                await self._send_batch(item)
            else:
                await self._send(item)

    async def _send_batch(self, batch: _Batch, attempt: int = 0) -> None:
        assert self._producer is not None
        try:
            value = frame_record(batch.encoded)
            future = await self._producer.send(batch.topic, value=value, key=b"~p%d" % batch.partition,
                                               partition=batch.partition)
        except Exception as exc:  # refused before sending (too large), or Kafka unreachable
            self._batch_failed(batch, exc, attempt + 1)
            return
        future.add_done_callback(lambda f: self._batch_delivered(f, batch, attempt))

    def _batch_delivered(self, future: asyncio.Future[Any], batch: _Batch, attempt: int) -> None:
        if future.cancelled():
            return  # shutting down: left unacked, so redelivered
        exc = future.exception()
        if exc is not None:
            self._batch_failed(batch, exc, attempt + 1)
            return
        self._done(batch.topic, batch.outs)

    def _batch_failed(self, batch: _Batch, exc: BaseException, attempt: int) -> None:
        """A record Kafka refuses for good is split into single records; all else is retried whole."""
        if _for_good(exc) and not self._stopping:
            log.warning("Kafka refused a record of %d messages for %s (%s: %s); sending each alone",
                        len(batch.outs), batch.topic, type(exc).__name__, exc)
            for out in batch.outs:
                self._spawn(self._send(out._replace(message=None)))
            return
        what = f"{len(batch.outs)} messages to {batch.topic}"
        self._retry_later(lambda: self._send_batch(batch, attempt), what, exc, attempt)

    async def _send(self, out: Outbound, attempt: int = 0) -> None:
        assert self._producer is not None
        try:
            future = await self._producer.send(out.topic, value=out.value, key=out.key)
        except Exception as exc:  # refused before sending (too large), or Kafka unreachable
            self._failed(out, exc, attempt + 1)
            return
        future.add_done_callback(lambda f: self._delivered(f, out, attempt))

    def _delivered(self, future: asyncio.Future[Any], out: Outbound, attempt: int) -> None:
        if future.cancelled():
            return  # shutting down: left unacked, so redelivered
        exc = future.exception()
        if exc is not None:
            self._failed(out, exc, attempt + 1)
            return
        self._done(out.topic, (out,))

    def _done(self, topic: str, outs: Sequence[Outbound]) -> None:
        """Kafka has `outs` on `topic`: ack them to MQTT (same connection only, one write) and
        queue their confirmations."""
        self._in_flight -= len(outs)
        metrics.bridge_delivered(topic, len(outs))
        generation = self._generation
        mids = [out.item.mid for out in outs if out.item.qos == 1 and out.item.generation == generation]
        if mids:
            assert self._net is not None
            self._net.ack_many(mids)  # queued; written at the next loop iteration
            self.stats.acked += len(mids)
        if self.config.edge_confirmations:
            for out in outs:
                if out.item.confirm and out.site_id and out.msg_id:
                    self._queue_confirmation(out.site_id, out.msg_id)
        self._maybe_resume()
        # An older connection's message is redelivered by the broker and produced again: a
        # duplicate downstream dedup absorbs, never a loss.

    def _queue_confirmation(self, site_id: str, msg_id: str) -> None:
        ids = self._confirm.get(site_id)
        if ids is None:
            ids = self._confirm[site_id] = []
        ids.append(msg_id)
        if self._confirm_timer is None:
            loop = asyncio.get_running_loop()
            self._confirm_timer = loop.call_later(self.config.confirm_delay_s, self._publish_confirmations)

    def _publish_confirmations(self) -> None:
        """One QoS 1 confirmation per site (chunked): queued by paho, sent after a reconnect if
        the broker is away; one that is lost anyway only makes the edge re-send, never lose."""
        self._confirm_timer = None
        pending, self._confirm = self._confirm, {}
        for site_id, ids in pending.items():
            for start in range(0, len(ids), MAX_IDS_PER_ACK):
                chunk = ids[start:start + MAX_IDS_PER_ACK]
                self._client.publish(ack_topic(site_id), encode_ack(chunk), qos=1)
                self.stats.confirmed += len(chunk)

    def _failed(self, out: Outbound, exc: BaseException, attempt: int) -> None:
        """A record Kafka refuses for good is dead-lettered (bounded) instead; all else is retried."""
        if _for_good(exc) and out.refusals < 2 and not self._stopping:
            self._refused(out, exc)
        else:
            self._retry_later(lambda: self._send(out, attempt), out.topic, exc, attempt)

    def _refused(self, out: Outbound, exc: BaseException) -> None:
        """Kafka will never take this record (issue 11: a 1 MB dead-letter record was retried
        forever, unacked, and a thousand of them stalled the bridge). Its message goes to the
        dead-letter topic with the refusal as reason; refused again, without any payload bytes."""
        item = out.item
        reason = f"Kafka refused the record for {out.topic}: {type(exc).__name__}: {exc}"
        if out.reason is not None:
            reason = f"{reason} (rejected before: {out.reason})"
        log.error("dead-lettering a message on %.200s: %.1000s", item.topic, reason,
                  extra=logs.topic_fields(item.topic))
        keep = 0 if out.refusals else PAYLOAD_PREFIX_BYTES
        record = deadletter_record(reason, item.topic, item.payload, max_payload_bytes=keep)
        if out.reason is None:
            self.stats.routed -= 1
            self.stats.rejected += 1
        self._spawn(self._send(out._replace(topic=DEADLETTER_TOPIC, key=None, value=record, reason=reason,
                                            refusals=out.refusals + 1)))

    def _retry_later(self, resend: Callable[[], Coroutine[Any, Any, None]], what: str, exc: BaseException,
                     attempt: int) -> None:
        """Kafka is unreachable: keep the message(s) (unacked) and retry with backoff, forever."""
        self.stats.kafka_retries += 1
        delay = min(self.config.retry_backoff_max_s, 0.1 * 2**attempt)
        log.warning("Kafka send of %s failed (%s); retry %d in %.1fs", what, exc, attempt, delay)

        async def retry() -> None:
            await asyncio.sleep(delay)
            await resend()

        self._spawn(retry())

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._retry_tasks.add(task)
        task.add_done_callback(self._retry_tasks.discard)

    async def _shutdown(self, connection: asyncio.Future[None], sender: asyncio.Future[None]) -> None:
        """Flush what Kafka has, ack it, then disconnect (DISCONNECT is queued after the acks)."""
        self._stopping = True
        assert self._net is not None
        self._net.stop()
        if self._batch_timer is not None:
            self._batch_timer.cancel()
            self._batch_timer = None
        self._close_all()
        self._outbox_closed = True
        self._outbox_ready.set()
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(sender), 15)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._producer.flush(), 15)
            await asyncio.sleep(0)  # let delivery callbacks run and ack
            for task in list(self._retry_tasks):
                task.cancel()
            await self._producer.stop()
        sender.cancel()
        if self._confirm_timer is not None:
            self._confirm_timer.cancel()
            self._publish_confirmations()  # queued before the DISCONNECT, like the acks
        if self._in_flight:
            log.warning("%d messages left unacked; the broker redelivers them", self._in_flight)
        await connection  # a connect in progress finishes (bounded by paho's connect timeout)
        await self._net.close()
        log.info("bridge stopped: %s", self.stats)
        self._stopped.set()


def _install_signal_handlers(bridge: Bridge) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, bridge.stop)


async def _amain(config: BridgeConfig) -> None:
    bridge = Bridge(config)
    _install_signal_handlers(bridge)
    with metrics.bridge_endpoint(bridge):  # /metrics, /healthz, /readyz
        await bridge.run()


_FLAG_SETTINGS = {"mqtt_host": "mqtt_host", "mqtt_port": "mqtt_port", "username": "mqtt_username",
                  "password_file": "mqtt_password_file", "tls_ca": "mqtt_tls_ca",
                  "tls_cert": "mqtt_tls_cert", "tls_key": "mqtt_tls_key", "metrics_port": "metrics_port"}


def settings_from_args(args: argparse.Namespace, settings: Settings) -> Settings:
    """The settings with every MQTT flag given on the command line taking precedence."""
    given = {field: getattr(args, flag) for flag, field in _FLAG_SETTINGS.items()
             if getattr(args, flag, None) is not None}
    return dataclasses.replace(settings, **given)


def main(argv: Sequence[str] | None = None) -> int:
    parser = cliutil.parser("wastestream bridge", "MQTT → Kafka bridge")
    parser.add_argument("--client-id", default=f"ws-bridge-{socket.gethostname()}",
                        help="stable per bridge instance: it names the persistent MQTT session")
    parser.add_argument("--group", default=MQTT_SHARE_GROUP, help="MQTT shared-subscription group")
    parser.add_argument("--receive-maximum", type=int, default=1000)
    parser.add_argument("--no-edge-confirmations", dest="edge_confirmations", action="store_false",
                        help="do not publish pipeline confirmations on ws/ack/v1/{site} (edges that "
                             "wait for them must then use `delivery: broker`)")
    mq = parser.add_argument_group("MQTT broker (each defaults to its WS_MQTT_* environment variable)")
    mq.add_argument("--mqtt-host", help="WS_MQTT_HOST")
    mq.add_argument("--mqtt-port", type=int, help="WS_MQTT_PORT")
    mq.add_argument("--username", help="WS_MQTT_USERNAME")
    mq.add_argument("--password-file", help="WS_MQTT_PASSWORD_FILE (first line); or set WS_MQTT_PASSWORD")
    mq.add_argument("--tls-ca", help="WS_MQTT_TLS_CA: CA file; enables TLS")
    mq.add_argument("--tls-cert", help="WS_MQTT_TLS_CERT: client certificate (mutual TLS)")
    mq.add_argument("--tls-key", help="WS_MQTT_TLS_KEY: its private key")
    parser.add_argument("--metrics-port", type=int,
                        help="WS_METRICS_PORT: /metrics, /healthz, /readyz on this port (0: off)")
    cliutil.add_log_level(parser)  # `-l/--loglevel`, the old spelling: a hidden alias
    args = parser.parse_args(argv)
    logs.configure(args.log_level)
    config = BridgeConfig(client_id=args.client_id, group=args.group, receive_maximum=args.receive_maximum,
                          edge_confirmations=args.edge_confirmations,
                          settings=settings_from_args(args, load_settings()))
    eventloop.install()
    asyncio.run(_amain(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
