"""The agent's one MQTT 5 connection: publishes the outbox at QoS 1, deletes on PUBACK.

Persistent session (clean_start=False + session expiry), client id `ws-edge-{site_id}`,
paho's own reconnect with exponential backoff (1 s .. 30 s), optional TLS and username with
the password read from a file or env var at start.

Status device: the agent reports itself as device `{site_id}-edge` under the kind of the
site's first device (the contract's topic kinds are device kinds, so the bridge accepts it):
an `online` DeviceStatus on every connect, `stopped` on a planned stop, and a Last-Will `offline` on
`ws/v1/{site}/{kind}/{site_id}-edge/device_status`. The will's msg_id is renewed after
every disconnect so two outages are two messages, not one de-duplicated away. Its seq
is taken at connect, so after a long uptime it lies thousands of heartbeats below the newest:
the stream recognises the agent's own `offline` (this device id, state `offline`) and
de-duplicates it apart from the seq window (stream/agents/device_health_state.py), so the
Will needs no renewal while connected.

Delivery: a pump thread sends outbox rows in id order, at most `max_inflight` unacked;
PUBACK arrives on paho's thread, which only queues it (paho holds its own lock there), and
the pump thread handles it. Within a process paho re-sends unacked messages after a
reconnect (same mid, DUP set); after a restart the outbox replays every row still stored.
A PUBACK with a failure reason code (e.g. not authorised) is logged and the row moved to the
outbox's refused table: the broker will refuse it again, and it must not block everything
behind it.

`delivery: pipeline` (default): a PUBACK only says the broker has the message, and a broker can
still lose it (a crash before its autosave, a restart before the bridges are back). So the row stays
until the bridge confirms Kafka has it (contract.acks: each PUBLISH names `ws/ack/v1/{site}` as its
MQTT 5 Response Topic, which the session subscribes to). What is not confirmed within
`confirm_timeout_s` while a later message was confirmed is lost on the way and re-sent; without that
evidence (a quiet site, or a pipeline that is down or lagging, which confirms in order) it is
re-sent after twice the wait, so a lagging pipeline is not flooded with copies. The wait doubles per
attempt up to 5 minutes; the workers' msg_id de-duplication absorbs the copies. At most
`max_unconfirmed` rows are out at once; the rest waits in the outbox. `delivery: broker`: the row is
deleted on PUBACK.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from contract import DeviceStatus, encode, mqtt_topic
from contract.acks import AckError, ack_topic, decode_ack
from contract.events import DeviceState
from edge.config import MqttConfig
from edge.outbox import Outbox
from wastestream.foundation.mqtt import MqttAuth, make_client
from wastestream.foundation.settings import load_settings

log = logging.getLogger("edge.mqtt")


class QuietReconnects(logging.Filter):
    """paho 2 logs `Client is not connected ...` at ERROR on every reconnect attempt while the
    broker is away (its loop runs once without a socket). The agent has already said so once
    ("MQTT disconnected ...; reconnecting with backoff"), so these become DEBUG: an outage of an
    hour is not a hundred errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and str(record.msg).startswith("Client is not connected"):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


PAHO_LOG = logging.getLogger("edge.mqtt.paho")
PAHO_LOG.addFilter(QuietReconnects())

RESEND_BACKOFF_MAX_S = 300.0
"""The longest wait for a confirmation before the next re-send of the same message."""

_RESEND_CHECK_S = 1.0


def agent_device_id(site_id: str) -> str:
    return f"{site_id}-edge"


class MqttSession:
    """Owns the paho client and the outbox pump; `start()` returns at once, `stop()` flushes."""

    def __init__(self, cfg: MqttConfig, site_id: str, outbox: Outbox, *, status_kind: str) -> None:
        self.cfg = cfg
        self.site_id = site_id
        self.outbox = outbox
        self.status_device = agent_device_id(site_id)
        self.status_topic = mqtt_topic(site_id, status_kind, self.status_device, "device_status")
        self._resends_file = load_settings().edge_resends_file
        self.connected = threading.Event()
        self.refused = 0
        self.connects = 0
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self.confirm_topic = ack_topic(site_id)
        self.pipeline_delivery = cfg.delivery == "pipeline"
        self._publish_props: Properties | None = None  # asks the bridge for a confirmation
        if self.pipeline_delivery:
            self._publish_props = Properties(PacketTypes.PUBLISH)
            self._publish_props.ResponseTopic = self.confirm_topic
        self.resent = 0
        self._acks: queue.SimpleQueue[tuple[int, str | None]] = queue.SimpleQueue()
        self._confirms: queue.SimpleQueue[list[str]] = queue.SimpleQueue()
        self._inflight: dict[int, tuple[int, str, int]] = {}  # paho mid -> (row id, msg_id, attempt)
        self._unconfirmed: dict[str, tuple[int, float, int]] = {}  # msg_id -> (row id, deadline, attempt)
        self._next_resend_check = 0.0
        self._newest_confirmed_row = 0  # highest outbox row id the pipeline confirmed
        self._high_water = 0  # last outbox row id handed to paho
        self._pump: threading.Thread | None = None
        self.client = self._make_client()
        outbox.on_put(self._wake.set)

    def _make_client(self) -> mqtt.Client:
        tls = self.cfg.tls
        client = make_client(f"ws-edge-{self.site_id}", MqttAuth(
            tls_ca=tls.ca_file if tls else "", tls_cert=(tls.cert_file or "") if tls else "",
            tls_key=(tls.key_file or "") if tls else "", username=self.cfg.username or "",
            password=self.cfg.password() if self.cfg.username else None))
        client.enable_logger(PAHO_LOG)
        client.max_inflight_messages_set(self.cfg.max_inflight)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        self._set_will(client)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    def _status(self, state: DeviceState, msg_id: str, last_error: str | None = None) -> bytes:
        return encode(
            DeviceStatus(
                msg_id=msg_id,
                device_id=self.status_device,
                site_id=self.site_id,
                ts=datetime.now(UTC),
                state=state,
                outbox_depth=self.outbox.depth(),
                last_error=last_error,
            )
        )

    def _set_will(self, client: mqtt.Client) -> None:
        msg_id = self.outbox.next_msg_id(self.status_device)
        payload = self._status(DeviceState.OFFLINE, msg_id, "connection lost (last will)")
        client.will_set(self.status_topic, payload, qos=1)

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.cfg.session_expiry_s
        self.client.connect_async(
            self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive, clean_start=False, properties=props
        )
        self.client.loop_start()
        self._pump = threading.Thread(target=self._pump_loop, name="edge-mqtt-pump", daemon=True)
        self._pump.start()

    def stop(self, flush_timeout: float = 5.0, reason: str = "planned stop") -> None:
        """Publish what we can within `flush_timeout`, say `stopped` (with `reason`: a planned stop,
        which the stream does not alert on), disconnect cleanly (the broker drops the Will)."""
        deadline = time.monotonic() + flush_timeout
        while self.connected.is_set() and time.monotonic() < deadline and self.outbox.depth() > 0:
            self._wake.set()
            time.sleep(0.05)
        self._stopping.set()
        self._wake.set()
        if self._pump is not None:
            self._pump.join(timeout=5)
        self._drain_acks()
        if self.connected.is_set():
            msg_id = self.outbox.next_msg_id(self.status_device)
            info = self.client.publish(self.status_topic, self._status(DeviceState.STOPPED, msg_id, reason),
                                       qos=1)
            try:
                info.wait_for_publish(timeout=max(0.5, deadline - time.monotonic()))
            except (RuntimeError, ValueError) as exc:
                log.warning("offline status not confirmed: %s", exc)
        self.client.disconnect()
        self.client.loop_stop()
        left = self.outbox.depth()
        if left:
            log.info("stopped with %d messages in the outbox; they are sent on the next start", left)

    def wait_connected(self, timeout: float) -> bool:
        return self.connected.wait(timeout)

    # paho thread callbacks: keep them short and lock-free with respect to the pump
    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            log.error("MQTT connect to %s:%d refused: %s", self.cfg.host, self.cfg.port, reason_code)
            return
        self.connects += 1
        log.info(
            "MQTT connected to %s:%d (session present: %s)",
            self.cfg.host,
            self.cfg.port,
            flags.session_present,
        )
        if self.pipeline_delivery:
            client.subscribe(self.confirm_topic, qos=1)
        msg_id = self.outbox.next_msg_id(self.status_device)
        client.publish(self.status_topic, self._status(DeviceState.ONLINE, msg_id), qos=1)
        self.connected.set()
        self._wake.set()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self.connected.clear()
        if not self._stopping.is_set():
            log.warning("MQTT disconnected (%s); reconnecting with backoff", reason_code)
            self._set_will(client)

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._acks.put((mid, str(reason_code) if reason_code.is_failure else None))
        self._wake.set()

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        if message.topic != self.confirm_topic:
            log.warning("unexpected message on %s ignored (the agent subscribes to its confirmations "
                        "only)", message.topic)
            return
        try:
            ids = decode_ack(bytes(message.payload))
        except AckError as exc:
            log.warning("bad confirmation on %s ignored: %.1000s", message.topic, exc)
            return
        except Exception:  # raised from a paho callback it would stop the network loop: never
            log.exception("undecodable confirmation on %s ignored", message.topic)
            return
        self._confirms.put(ids)
        self._wake.set()

    # the pump thread
    def _pump_loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            try:
                self._drain_acks()
                self._drain_confirms()
                if self.connected.is_set():
                    self._resend_overdue()
                    self._send_more()
            except Exception:  # a pump that dies silently would stop all delivery
                log.exception("outbox pump error; retrying")
                time.sleep(0.5)

    def _drain_acks(self) -> None:
        while True:
            try:
                mid, failed = self._acks.get_nowait()
            except queue.Empty:
                return
            sent = self._inflight.pop(mid, None)
            if sent is None:
                continue  # a status message, not an outbox row
            row, msg_id, attempt = sent
            if failed:
                self.refused += 1
                log.error("broker refused outbox row %d (%s): kept in the outbox's refused table; "
                          "check the broker ACL (username must be the site id)", row, failed)
                self.outbox.refuse(row, f"PUBACK {failed}")
            elif self.pipeline_delivery:
                self._unconfirmed[msg_id] = (row, time.monotonic() + self._confirm_wait(attempt), attempt)
            else:
                self.outbox.ack(row)

    def _confirm_wait(self, attempt: int) -> float:
        return min(RESEND_BACKOFF_MAX_S, self.cfg.confirm_timeout_s * 2**attempt)

    def _drain_confirms(self) -> None:
        """Forget what the pipeline has, in one outbox transaction per wake-up."""
        ids: list[str] = []
        while True:
            try:
                ids.extend(self._confirms.get_nowait())
            except queue.Empty:
                break
        if not ids:
            return
        for msg_id in ids:
            waiting = self._unconfirmed.pop(msg_id, None)
            if waiting is not None and waiting[0] > self._newest_confirmed_row:
                self._newest_confirmed_row = waiting[0]
        # A confirmation that overtook its PUBACK still deletes the row; the PUBACK then leaves an
        # entry whose re-send finds no row and is forgotten.
        self.outbox.confirm(ids)

    def _resend_overdue(self) -> None:
        """Re-send, oldest first, what the pipeline has not confirmed in time (room permitting)."""
        now = time.monotonic()
        if not self._unconfirmed or now < self._next_resend_check:
            return
        self._next_resend_check = now + _RESEND_CHECK_S
        room = self.cfg.max_inflight - len(self._inflight)
        overtaken = self._newest_confirmed_row
        overdue = [(row, msg_id, attempt) for msg_id, (row, deadline, attempt) in self._unconfirmed.items()
                   if deadline <= now and (row < overtaken or deadline + self._confirm_wait(attempt) <= now)
                   ][:max(room, 0)]
        if not overdue:
            return
        attempts = {row: (msg_id, attempt) for row, msg_id, attempt in overdue}
        for _row, msg_id, _attempt in overdue:
            del self._unconfirmed[msg_id]  # rows gone from the outbox (confirmed early) end here
        entries = self.outbox.rows(list(attempts))
        for entry in entries:
            msg_id, attempt = attempts[entry.id]
            info = self.client.publish(entry.topic, entry.payload, qos=1, properties=self._publish_props)
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                self._unconfirmed[msg_id] = (entry.id, now, attempt)  # try again at the next check
                continue
            self._inflight[info.mid] = (entry.id, msg_id, attempt + 1)
        if entries:
            self.resent += len(entries)
            self._record_resends(len(entries))
            log.warning(
                "re-sent %d message(s) the pipeline did not confirm in time (oldest row %d, attempt %d); "
                "if this repeats, check the bridges are running with confirmations on, or set "
                "mqtt.delivery: broker", len(entries), entries[0].id, attempts[entries[0].id][1] + 1)

    def _record_resends(self, count: int) -> None:
        """One JSON line in WS_EDGE_RESENDS_FILE, if set (the chaos report reads it); best effort."""
        path = self._resends_file
        if not path:
            return
        line = json.dumps({"site": self.site_id, "ts": datetime.now(UTC).isoformat(), "count": count})
        try:
            with open(path, "a", encoding="utf-8") as out:
                out.write(line + "\n")
        except OSError as exc:
            log.debug("re-send record not written to %s: %s", path, exc)

    def _send_more(self) -> None:
        room = self.cfg.max_inflight - len(self._inflight)
        if self.pipeline_delivery:
            room = min(room, self.cfg.max_unconfirmed - len(self._unconfirmed) - len(self._inflight))
        if room <= 0:
            return
        for entry in self.outbox.pending(after_id=self._high_water, limit=room):
            info = self.client.publish(entry.topic, entry.payload, qos=1, properties=self._publish_props)
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                log.warning("publish of row %d failed (rc %s); retrying later", entry.id, info.rc)
                return
            # paho keeps NO_CONN messages and sends them on reconnect
            self._inflight[info.mid] = (entry.id, entry.msg_id, 0)
            self._high_water = entry.id

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    @property
    def unconfirmed(self) -> int:
        """PUBACKed by the broker, not yet confirmed by the pipeline (`delivery: pipeline`)."""
        return len(self._unconfirmed)
