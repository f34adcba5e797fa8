"""paho-mqtt driven by an asyncio loop instead of its own network thread.

paho's documented external-event-loop API: `on_socket_open` / `on_socket_close` add and remove
the socket's reader (`loop_read`), `on_socket_register_write` / `on_socket_unregister_write` its
writer (`loop_write`), and a periodic `loop_misc` does keepalive and timeouts. With no
`loop_start()` there is no wake-up socketpair: `publish`/`ack`/`subscribe` only queue a packet,
and paho asks us (register_write) to write it; we try at once on the next loop iteration (the
socket is nearly always writable, and every ack queued in between leaves in the same write),
and only watch for writability when the kernel buffer is full.

Connecting blocks on the TCP (and TLS) handshake, so `reconnect()` runs in an executor thread (as
aiomqtt does); paho then calls on_socket_open/register_write from that thread, and they hop to
the loop with call_soon_threadsafe. While the connection is up everything runs on the loop
thread. `keep_connected()` replaces loop_forever's reconnect: on a lost connection it reconnects
with backoff (1 s doubling to 10 s, back to 1 s after a CONNACK) until stopped.

Reads (issue 14: the bridge's CPU per message). paho reads one packet per `loop_read` with three or
more `recv` calls, and builds an `MQTTMessage` and its callbacks' locks per PUBLISH. With
`on_publish` given (and a paho version stream.paho_speedups was checked against), the loop reads
the socket in chunks of up to `CHUNK_BYTES`, splits them into packets itself and hands each QoS 0
or 1 PUBLISH straight to `on_publish(topic, payload, mid, qos, response_topic)` (of its MQTT 5
properties only the Response Topic is read: paho's `Properties.unpack` cost more than the rest of
the message's way to Kafka); every other packet (CONNACK, SUBACK, PUBACK of our own publishes,
PINGRESP, DISCONNECT, QoS 2, a Topic Alias, anything odd or malformed) goes to paho whole, which
reads it through `paho_speedups.feed_reads` from the chunk instead of the socket, so paho's
state, errors and callbacks are its own. The end of the connection and socket errors reach paho
the same way. `ack_many` queues many PUBACKs as one write.
Without `on_publish`, paho still parses every packet, from the chunks (the TLS test's client);
on another paho version the loop calls paho's own `loop_read` as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import struct
import threading
from collections.abc import Callable, Iterable
from typing import Any

import paho.mqtt.client as mqtt

from stream import paho_speedups

log = logging.getLogger(__name__)

READ_BUDGET = 256
"""Packets (paho's path) or chunks (direct reads) read per readable event before giving the
loop back to other work."""
CHUNK_BYTES = 64 * 1024
"""Bytes asked of the socket per read on the direct path."""
MISC_INTERVAL_S = 1.0

OnPublish = Callable[[str, bytes, int, int, str | None], None]
"""`on_publish(topic, payload, mid, qos, response_topic)`: one QoS 0/1 PUBLISH (response_topic:
its MQTT 5 Response Topic, None without one)."""

_FIXED_SIZE = {0x01: 1, 0x02: 4}
"""PUBLISH properties of fixed size: Payload Format Indicator, Message Expiry Interval."""
_LENGTH_PREFIXED = {0x03: 1, 0x08: 1, 0x09: 1, 0x26: 2}
"""PUBLISH properties of 1 or 2 (a pair) length-prefixed strings or bytes: Content Type, Response
Topic, Correlation Data, User Property. Subscription Identifier (0x0B) is a varint; a Topic Alias
(0x23) or any other identifier goes to paho."""
_RESPONSE_TOPIC, _SUBSCRIPTION_ID = 0x08, 0x0B

_PUBLISH, _PUBACK = 0x30, 0x40
_PUBACK_PACKET = struct.Struct("!BBH")
_NO_DATA = b""


_INCOMPLETE, _MALFORMED = -1, -2


def _varint(buf: bytearray, pos: int, end: int) -> tuple[int, int]:
    """MQTT's Variable Byte Integer at `pos` (1 to 4 bytes of 7 bits): its value and the position
    after it; the value is `_INCOMPLETE` when it runs past `end`, `_MALFORMED` past 4 bytes."""
    value = shift = 0
    while pos < end:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 21:
            return _MALFORMED, pos
    return _INCOMPLETE, pos


def _response_topic(buf: bytearray, pos: int, end: int) -> str | None:
    """The Response Topic among a PUBLISH's properties at `pos`..`end`, or None; ValueError when
    they are malformed (as paho would say) or hold a property this does not walk."""
    found = None
    while pos < end:
        identifier = buf[pos]
        pos += 1
        if identifier in _FIXED_SIZE:
            pos += _FIXED_SIZE[identifier]
        elif identifier in _LENGTH_PREFIXED:
            for _ in range(_LENGTH_PREFIXED[identifier]):
                if pos + 2 > end:
                    raise ValueError("truncated property")
                start, pos = pos + 2, pos + 2 + ((buf[pos] << 8) | buf[pos + 1])
                if identifier == _RESPONSE_TOPIC:
                    if found is not None:
                        raise ValueError("Response Topic twice")
                    found = buf[start:pos].decode("utf-8")  # UnicodeDecodeError is a ValueError
        elif identifier == _SUBSCRIPTION_ID:
            value, pos = _varint(buf, pos, end)
            if value < 0:
                raise ValueError("bad Subscription Identifier")
        else:
            raise ValueError(f"property {identifier:#x}")
    if pos != end:
        raise ValueError("properties overrun their length")
    return found


class PahoOnLoop:
    """Runs `client`'s network I/O on `loop`. Call `keep_connected()` after `client.connect_async()`."""

    def __init__(self, client: mqtt.Client, loop: asyncio.AbstractEventLoop, *, min_delay: float = 1.0,
                 max_delay: float = 10.0, on_publish: OnPublish | None = None,
                 read_interval_s: float = 0.0) -> None:
        self.client = client
        self.loop = loop
        self.min_delay, self.max_delay = min_delay, max_delay
        self.delay = min_delay
        self.connecting = False
        self.closed = asyncio.Event()  # no socket open
        self.closed.set()
        self.on_closed: Callable[[], None] | None = None
        """Called on the loop when the socket closes (the connection is gone)."""
        self._thread_id = threading.get_ident()
        self._fd: int | None = None
        self._sock: Any = None
        self._ssl = False
        self._reading = False
        self._paused = False
        self._writer = False
        self._write_scheduled = False
        self._packets = 0  # PUBLISH packets delivered: a read that yields none ends the burst
        self._stop = asyncio.Event()
        self._direct = paho_speedups.direct_io_checked(client)
        self.on_publish = on_publish if self._direct else None
        """QoS 0/1 PUBLISHes parsed by the loop go here (None: through paho's on_message)."""
        self.read_interval_s = read_interval_s
        """The loop rests this long after each read (direct path), so that the next read takes
        what came meanwhile: a message handled alone costs several times one of a burst (its
        code and data have left the CPU caches), and each read costs a wake-up."""
        self._rest: asyncio.TimerHandle | None = None
        self._buf = bytearray()  # read from the socket, not parsed yet (a partial packet, or paused)
        self._feed = _NO_DATA  # one packet for paho to read (`_paho_recv`)
        self._feed_end: OSError | None = None  # the socket failed: paho reads that instead
        self._feed_eof = False  # the broker closed the connection: paho reads b""
        if self._direct:
            paho_speedups.feed_reads(client, self._paho_recv)
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = self._on_unregister_write

    # --- paho socket callbacks (on the loop, or the executor thread while connecting) ---------

    def _on_loop(self, fn: Callable[..., None], *args: Any) -> None:
        if threading.get_ident() == self._thread_id:
            fn(*args)
        else:
            self.loop.call_soon_threadsafe(fn, *args)

    def _on_socket_open(self, _c: mqtt.Client, _ud: Any, sock: Any) -> None:
        self._on_loop(self._opened, sock, sock.fileno())

    def _on_socket_close(self, _c: mqtt.Client, _ud: Any, sock: Any) -> None:
        self._on_loop(self._closed, sock)

    def _on_register_write(self, _c: mqtt.Client, _ud: Any, sock: Any) -> None:
        self._on_loop(self._schedule_write, sock)

    def _on_unregister_write(self, _c: mqtt.Client, _ud: Any, sock: Any) -> None:
        self._on_loop(self._drop_writer, sock)

    # --- on the loop ----------------------------------------------------------------------------

    def _opened(self, sock: Any, fd: int) -> None:
        self._sock, self._fd = sock, fd
        self._reset_reads()
        self._ssl = isinstance(sock, ssl.SSLSocket)
        self.closed.clear()
        self._paused_or_read()

    def _closed(self, sock: Any) -> None:
        if sock is not self._sock:
            return
        self._stop_reading()
        self._drop_writer(sock)
        self._sock = self._fd = None
        self._reset_reads()
        self.closed.set()
        if self.on_closed is not None:
            self.on_closed()

    def _paused_or_read(self) -> None:
        if self._fd is None or self._paused or self._reading or self._rest is not None:
            return
        self.loop.add_reader(self._fd, self._on_readable)
        self._reading = True
        # Bytes may already wait in the SSL object (or arrived while paused): epoll would not say.
        self.loop.call_soon(self._on_readable)

    def _stop_reading(self) -> None:
        if self._reading and self._fd is not None:
            self.loop.remove_reader(self._fd)
        self._reading = False

    def _rested(self) -> None:
        self._rest = None
        self._paused_or_read()

    def pause_reading(self) -> None:
        """Stop reading the socket (back-pressure): the broker's TCP window fills, not our memory."""
        self._paused = True
        self._stop_reading()

    def resume_reading(self) -> None:
        self._paused = False
        self._paused_or_read()

    @property
    def paused(self) -> bool:
        return self._paused

    def message_delivered(self) -> None:
        """Called by the owner's on_message: one more packet read in this burst (paho's path)."""
        self._packets += 1

    def ack_many(self, mids: Iterable[int]) -> None:
        """PUBACK each QoS 1 `mid` (manual ack), all in one write."""
        if not self._direct:
            for mid in mids:
                self.client.ack(mid, 1)
            return
        data = b"".join([_PUBACK_PACKET.pack(_PUBACK, 2, mid) for mid in mids])
        if data:
            paho_speedups.queue_packet(self.client, _PUBACK, data)

    def _on_readable(self) -> None:
        sock = self._sock
        if sock is None or not self._reading:
            return
        try:
            if self._direct:
                self._read_chunks(sock)
            else:
                self._read_packets(sock)
        except Exception:  # a bug in a callback: keep the loop alive, the connection drops
            log.exception("MQTT read failed")
            self.client.disconnect()
        if self.read_interval_s and self._reading and self._direct and sock is self._sock:
            self._stop_reading()
            self._rest = self.loop.call_later(self.read_interval_s, self._rested)

    def _read_packets(self, sock: Any) -> None:
        """paho's path: loop_read reads one packet; keep reading while packets come (no epoll
        round trip per message) and, for TLS, while decrypted bytes remain in the SSL object."""
        for _ in range(READ_BUDGET):
            before = self._packets
            rc = self.client.loop_read()
            if rc != mqtt.MQTT_ERR_SUCCESS or sock is not self._sock or not self._reading:
                return
            if self._packets == before and not (self._ssl and sock.pending()):
                return
        if self._ssl and sock.pending():
            self.loop.call_soon(self._on_readable)  # budget spent with bytes epoll cannot see

    def _read_chunks(self, sock: Any) -> None:
        """The direct path: what is left from before a pause first, then chunks of the socket."""
        if self._buf:
            self._split(sock)
        for _ in range(READ_BUDGET):
            if sock is not self._sock or not self._reading:
                return
            try:
                data = sock.recv(CHUNK_BYTES)
            except (BlockingIOError, ssl.SSLWantReadError):
                return
            except ssl.SSLWantWriteError:  # TLS wants to write first (paho's own read does this)
                self._schedule_write(sock)
                return
            except OSError as exc:
                self._feed_end = exc
                self._paho_reads(sock)
                return
            if not data:
                self._feed_eof = True
                self._paho_reads(sock)
                return
            paho_speedups.bytes_received(self.client)
            self._buf += data
            self._split(sock)
            if len(data) < CHUNK_BYTES and not (self._ssl and sock.pending()):
                return  # the kernel's buffer is drained: epoll says when more comes
        if self._reading and sock is self._sock:
            self.loop.call_soon(self._on_readable)  # budget spent (TLS: bytes epoll cannot see)

    def _split(self, sock: Any) -> None:
        """Hand every whole packet in the buffer on (until paused or the socket is gone)."""
        buf = self._buf
        end_of_data = len(buf)
        pos = 0
        try:
            while pos < end_of_data and not self._paused and sock is self._sock:
                length, body = _varint(buf, pos + 1, end_of_data)  # the remaining length
                if length == _MALFORMED:  # paho says so and disconnects
                    self._feed = bytes(buf[pos:])
                    pos = end_of_data
                    self._paho_reads(sock)
                    return
                end = body + length
                if length == _INCOMPLETE or end > end_of_data:
                    return  # the packet is not all here yet
                command = buf[pos]
                if not (command & 0xF0 == _PUBLISH and self.on_publish is not None
                        and self._publish(command, buf, body, end)):
                    self._feed = bytes(buf[pos:end])
                    self._paho_reads(sock)
                pos = end
        finally:
            if sock is self._sock:
                del buf[:pos]

    def _publish(self, command: int, buf: bytearray, pos: int, end: int) -> bool:
        """Parse one PUBLISH (MQTT 5) and hand it to `on_publish`; False: paho shall have it
        (QoS 2, a topic alias, or anything malformed, which paho reports its own way)."""
        qos = (command >> 1) & 3
        if qos > 1 or end - pos < 3:
            return False
        topic_end = pos + 2 + ((buf[pos] << 8) | buf[pos + 1])
        if topic_end == pos + 2 or topic_end + (3 if qos else 1) > end:
            return False  # no topic (an alias only) or too short
        topic = buf[pos + 2:topic_end].decode("utf-8", "replace")  # not UTF-8: no contract topic
        pos = topic_end
        mid = 0
        if qos:
            mid = (buf[pos] << 8) | buf[pos + 1]
            pos += 2
        props_len, props_start = _varint(buf, pos, end)
        pos = props_start + props_len
        if props_len < 0 or pos > end:
            return False
        response_topic = None
        if props_len:
            try:
                response_topic = _response_topic(buf, props_start, pos)
            except ValueError:  # malformed, or a Topic Alias: paho's path
                return False
        assert self.on_publish is not None
        self.on_publish(topic, bytes(buf[pos:end]), mid, qos, response_topic)
        return True

    def _paho_reads(self, sock: Any) -> None:
        """paho reads what `_feed` holds (or the connection's end) through `_paho_recv`."""
        while sock is self._sock:
            rc = self.client.loop_read()
            if rc != mqtt.MQTT_ERR_SUCCESS or not (self._feed or self._feed_end or self._feed_eof):
                return

    def _paho_recv(self, bufsize: int) -> bytes:
        data = self._feed
        if data:
            self._feed = data[bufsize:]
            return data[:bufsize]
        if self._feed_end is not None:
            exc, self._feed_end = self._feed_end, None
            raise exc
        if self._feed_eof:
            self._feed_eof = False
            return _NO_DATA
        raise BlockingIOError

    def _reset_reads(self) -> None:
        if self._rest is not None:
            self._rest.cancel()
            self._rest = None
        self._buf.clear()
        self._feed, self._feed_end, self._feed_eof = _NO_DATA, None, False

    def _schedule_write(self, sock: Any) -> None:
        if not self._write_scheduled:
            self._write_scheduled = True
            self.loop.call_soon(self._write_now, sock)

    def _write_now(self, sock: Any) -> None:
        self._write_scheduled = False
        if sock is not self._sock:
            return
        self._on_writable()
        if self._sock is sock and self.client.want_write() and not self._writer:
            self.loop.add_writer(sock.fileno(), self._on_writable)  # kernel buffer full: wait
            self._writer = True

    def _on_writable(self) -> None:
        try:
            self.client.loop_write()
        except Exception:
            log.exception("MQTT write failed")

    def _drop_writer(self, sock: Any) -> None:
        if self._writer and self._fd is not None and sock is self._sock:
            self.loop.remove_writer(self._fd)
        self._writer = False

    async def _misc(self) -> None:
        while True:
            await asyncio.sleep(MISC_INTERVAL_S)
            if not self.connecting:
                self.client.loop_misc()

    def connected(self) -> None:
        """Called by the owner's on_connect after a successful CONNACK: the backoff starts over."""
        self.delay = self.min_delay

    async def keep_connected(self) -> None:
        """Connect, and reconnect with backoff whenever the connection is lost, until `stop()`."""
        misc = asyncio.ensure_future(self._misc())
        try:
            first = True
            while not self._stop.is_set():
                if not first:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), self.delay)
                    if self._stop.is_set():
                        break
                    self.delay = min(self.max_delay, self.delay * 2)
                first = False
                self.connecting = True
                try:
                    await self.loop.run_in_executor(None, self.client.reconnect)
                except (OSError, ValueError) as exc:  # refused, unreachable, TLS handshake/name
                    log.warning("MQTT connect to %s:%s failed (%s); retry in %.0fs",
                                self.client.host, self.client.port, exc, self.delay)
                    continue
                finally:
                    self.connecting = False
                await asyncio.sleep(0)  # the socket callbacks queued by the executor thread
                stop = asyncio.ensure_future(self._stop.wait())
                lost = asyncio.ensure_future(self.closed.wait())
                await asyncio.wait({stop, lost}, return_when=asyncio.FIRST_COMPLETED)
                stop.cancel()
                lost.cancel()
                if not self._stop.is_set():
                    log.warning("MQTT connection lost; reconnecting in %.0fs", self.delay)
        finally:
            misc.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await misc

    def stop(self) -> None:
        """No more reconnects (the current connection stays until `close()`)."""
        self._stop.set()

    async def close(self, timeout: float = 5.0) -> None:
        """Send DISCONNECT (after everything already queued) and wait for the socket to close."""
        self._stop.set()
        if self._sock is None:
            return
        self.client.disconnect()
        try:
            await asyncio.wait_for(self.closed.wait(), timeout)
        except TimeoutError:
            log.warning("MQTT DISCONNECT not written within %.0fs; closing", timeout)
            sock = self._sock
            if sock is not None:
                self._closed(sock)
                sock.close()
