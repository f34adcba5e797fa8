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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

log = logging.getLogger(__name__)

READ_BUDGET = 256
"""Packets read per readable event before giving the loop back to other work."""
MISC_INTERVAL_S = 1.0


class PahoOnLoop:
    """Runs `client`'s network I/O on `loop`. Call `keep_connected()` after `client.connect_async()`."""

    def __init__(self, client: mqtt.Client, loop: asyncio.AbstractEventLoop, *,
                 min_delay: float = 1.0, max_delay: float = 10.0) -> None:
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
        self._ssl = isinstance(sock, ssl.SSLSocket)
        self.closed.clear()
        self._paused_or_read()

    def _closed(self, sock: Any) -> None:
        if sock is not self._sock:
            return
        self._stop_reading()
        self._drop_writer(sock)
        self._sock = self._fd = None
        self.closed.set()
        if self.on_closed is not None:
            self.on_closed()

    def _paused_or_read(self) -> None:
        if self._fd is None or self._paused or self._reading:
            return
        self.loop.add_reader(self._fd, self._on_readable)
        self._reading = True
        # Bytes may already wait in the SSL object (or arrived while paused): epoll would not say.
        self.loop.call_soon(self._on_readable)

    def _stop_reading(self) -> None:
        if self._reading and self._fd is not None:
            self.loop.remove_reader(self._fd)
        self._reading = False

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
        """Called by the owner's on_message: one more packet read in this burst."""
        self._packets += 1

    def _on_readable(self) -> None:
        sock = self._sock
        if sock is None or not self._reading:
            return
        # loop_read reads one packet; keep reading while packets come (no epoll round trip per
        # message) and, for TLS, while decrypted bytes remain in the SSL object.
        for _ in range(READ_BUDGET):
            before = self._packets
            try:
                rc = self.client.loop_read()
            except Exception:  # a bug in a callback: keep the loop alive, the connection drops
                log.exception("MQTT read failed")
                self.client.disconnect()
                return
            if rc != mqtt.MQTT_ERR_SUCCESS or sock is not self._sock or not self._reading:
                return
            if self._packets == before and not (self._ssl and sock.pending()):
                return
        if self._ssl and sock.pending():
            self.loop.call_soon(self._on_readable)  # budget spent with bytes epoll cannot see

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
