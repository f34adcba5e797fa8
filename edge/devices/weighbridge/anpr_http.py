"""Plate cameras' HTTP push (`AlarmInfoPlate`): the edge is the HTTP server the camera posts to.

Many Chinese all-in-one plate cameras (车牌识别一体机) push each recognition as an HTTP POST of a
JSON body to a URL set on the camera's web page ("HTTP 推送"); the facts below are from the
vendors' published push protocol (臻识 / Vzenith "HTTP 推送协议", and the AlphaDigi wiki's "API via
HTTP POST" that follows it):

- body ``{"AlarmInfoPlate": {"serialno", "deviceName", "ipaddr", "result": {"PlateResult": {...}}}}``;
  ``PlateResult.license`` the plate (UTF-8; ``_无_`` when the camera saw no plate), ``colorType`` the
  plate colour (0 unknown, 1 blue, 2 yellow, 3 white, 4 black, 5 green, 6 yellow-green),
  ``confidence`` 1-100, ``timeStamp.Timeval.sec``/``usec`` the recognised frame's time as a Unix
  time (the ``dec*`` fields beside it are the same instant in the camera's local time),
  ``plateid`` the record id and ``isoffline`` 1 for a record the camera kept while the server was
  unreachable and re-sends now (断线重传); ``imageFile``/``imageFragmentFile`` optional base64 images.
- the server answers 200 with ``{"Response_AlarmInfoPlate": {...}}``: ``"info": "ok"`` makes the
  camera OPEN THE BARRIER, so the edge (which does not own the gate) answers ``"info": "no"``;
  ``plateid`` echoes an online record, ``ContinuePushOffline {"plateid", "continue": 1}`` asks for
  the next offline record, ``"content": "retransfer_stop"`` tells AlphaDigi-style cameras the record
  arrived (without it some re-send the same record for ever).
- heartbeats and device registration come as ``multipart/form-data`` posts; I/O triggers
  (``AlarmGioIn``) and RS-485 pass-through (``SerialData``) as other JSON bodies: answered 200, not plates.

Bad input never crashes the server and is never silent: a body over `max_body_bytes`, bad or too
deeply nested JSON, a body without a plate or whose plate breaks the contract's PLATE rule gets a
4xx with the reason, a `"<device>: anpr http: <reason>"` warning in the agent's log and a
count in `rejected`. HTTP/1.1 parsing is h11's (bounded header size); the body is read up to the
declared Content-Length only, with a time-out, and at most `MAX_CONNECTIONS` cameras at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import h11
import msgspec

from edge.devices.weighbridge.anpr import NO_PLATE, PlateRead, plate_problem

log = logging.getLogger("edge.weighbridge")

PLATE_COLORS: dict[int, str] = {
    0: "unknown", 1: "blue", 2: "yellow", 3: "white", 4: "black", 5: "green", 6: "yellow_green",
}
MAX_HEADER_BYTES = 16 * 1024
MAX_CONNECTIONS = 16
READ_TIMEOUT_S = 10.0
BODY_TIMEOUT_S = 30.0
"""A whole body must arrive within this (a camera sends its push at LAN speed; a trickle is cut)."""
IDLE_TIMEOUT_S = 75.0
LINGER_S = 2.0
LINGER_BYTES = 64 * 1024 * 1024


class _Timeval(msgspec.Struct):
    sec: int | None = None
    usec: int = 0


class _TimeStamp(msgspec.Struct):
    Timeval: _Timeval | None = None


class _PlateResult(msgspec.Struct):
    license: str
    colorType: int | None = None
    confidence: float | None = None
    timeStamp: _TimeStamp | None = None
    plateid: int | None = None
    isoffline: int = 0


class _Result(msgspec.Struct):
    PlateResult: _PlateResult


class _Alarm(msgspec.Struct):
    result: _Result
    serialno: str | None = None


class _Push(msgspec.Struct):
    AlarmInfoPlate: _Alarm | None = None
    AlarmGioIn: object = None
    SerialData: object = None


@dataclass(frozen=True, slots=True)
class Pushed:
    """What one POST body was: a plate read, a recognised non-plate message, or a rejection."""

    read: PlateRead | None = None
    reason: str | None = None
    """Why the body is refused (then `read` is None and the answer is 4xx)."""
    note: str | None = None
    """A body that is no plate but no error either (a no-plate read, an I/O trigger)."""
    plateid: int | None = None
    offline: bool = False


def decode_push(body: bytes) -> Pushed:
    """Decode one camera POST body (pure; never raises)."""
    try:
        push = msgspec.json.decode(body, type=_Push)
    except RecursionError:
        return Pushed(reason="JSON nested too deeply")
    except msgspec.ValidationError as exc:
        return Pushed(reason=f"not an AlarmInfoPlate push: {exc}")
    except msgspec.DecodeError as exc:
        return Pushed(reason=f"bad JSON: {exc}")
    if push.AlarmInfoPlate is None:
        if push.AlarmGioIn is not None or push.SerialData is not None:
            return Pushed(note="I/O trigger or serial pass-through, no plate")
        return Pushed(reason="JSON without AlarmInfoPlate")
    pr = push.AlarmInfoPlate.result.PlateResult
    offline = pr.isoffline == 1
    license_ = pr.license.strip()
    if license_.upper() in NO_PLATE:
        return Pushed(note="the camera saw no plate", plateid=pr.plateid, offline=offline)
    if (problem := plate_problem(license_)) is not None:
        return Pushed(reason=f"{problem}: {license_[:32]!r}", plateid=pr.plateid, offline=offline)
    frame_ts = None
    tv = pr.timeStamp.Timeval if pr.timeStamp is not None else None
    if tv is not None and tv.sec is not None and 0 < tv.sec < 2**32:
        frame_ts = datetime.fromtimestamp(tv.sec + min(max(tv.usec, 0), 999_999) / 1e6, UTC)
    confidence = None if pr.confidence is None else max(0, min(100, round(pr.confidence)))
    color = None if pr.colorType is None else PLATE_COLORS.get(pr.colorType, f"code {pr.colorType}")
    read = PlateRead(license_, confidence=confidence, color=color, frame_ts=frame_ts, source="http")
    return Pushed(read=read, plateid=pr.plateid, offline=offline)


def response_body(pushed: Pushed) -> bytes:
    """The camera's answer: received, do not open the gate; the next offline record if it sent one."""
    reply: dict[str, object] = {"info": "no", "content": "retransfer_stop", "is_pay": "false"}
    if pushed.plateid is not None:
        reply["plateid"] = pushed.plateid
        if pushed.offline:
            reply["ContinuePushOffline"] = {"plateid": pushed.plateid, "continue": 1}
    return msgspec.json.encode({"Response_AlarmInfoPlate": reply})


class AnprHttpServer:
    """The camera push endpoint of one weighbridge; `on_read` gets each valid plate read."""

    def __init__(
        self,
        device_id: str,
        on_read: Callable[[PlateRead], None],
        *,
        host: str = "0.0.0.0",  # the camera is on the site LAN
        port: int = 8080,
        path: str = "/",
        max_body_bytes: int = 4 * 1024 * 1024,
    ) -> None:
        self.device_id, self.on_read = device_id, on_read
        self.host, self.port, self.path, self.max_body = host, port, path, max_body_bytes
        self.rejected: Counter[str] = Counter()
        self.reads = 0
        self.heartbeats = 0
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS)
        self._open: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self.bound_port: int | None = None

    async def serve(self, stop: asyncio.Event) -> None:
        """Listen until `stop` is set."""
        server = await asyncio.start_server(self._connection, self.host, self.port, limit=MAX_HEADER_BYTES)
        self.bound_port = server.sockets[0].getsockname()[1]
        log.info("%s: plate camera push on http://%s:%d%s", self.device_id, self.host, self.bound_port,
                 self.path)
        async with server:
            await stop.wait()
            server.close()
            for writer in list(self._open):  # cameras still connected: cut, so their handlers end
                writer.transport.abort()
            if self._handlers:
                await asyncio.wait(self._handlers, timeout=LINGER_S + 1)

    def _reject(self, reason: str, peer: str) -> None:
        self.rejected[reason.split(":")[0]] += 1
        log.warning("%s: anpr http: %s (from %s)", self.device_id, reason, peer)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = str(writer.get_extra_info("peername"))
        if self._slots.locked():
            self._reject(f"more than {MAX_CONNECTIONS} connections at once", peer)
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self._open.add(writer)
        self._handlers.add(task)
        async with self._slots:
            try:
                await self._requests(reader, writer, peer)
            except (TimeoutError, ConnectionError, h11.ProtocolError) as exc:
                if not isinstance(exc, ConnectionError):
                    self._reject(f"bad HTTP request: {type(exc).__name__} {exc}", peer)
            finally:
                await _linger(reader, writer)
                self._open.discard(writer)
                self._handlers.discard(task)

    async def _requests(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        while True:
            try:
                event = await self._next(conn, reader, IDLE_TIMEOUT_S)
            except TimeoutError:
                if conn.their_state is h11.IDLE:
                    return  # a kept-alive connection the camera left idle: closed, nothing wrong
                raise
            if isinstance(event, h11.ConnectionClosed):
                return
            if not isinstance(event, h11.Request):
                return
            status, body = await self._handle(conn, reader, writer, event, peer)
            headers = [("content-type", "application/json; charset=utf-8"),
                       ("content-length", str(len(body)))]
            if status >= 400:
                headers.append(("connection", "close"))
            writer.write(conn.send(h11.Response(status_code=status, headers=headers)) or b"")
            writer.write(conn.send(h11.Data(data=body)) or b"")
            writer.write(conn.send(h11.EndOfMessage()) or b"")
            await writer.drain()
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()

    async def _next(self, conn: h11.Connection, reader: asyncio.StreamReader, timeout: float) -> h11.Event:
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event  # type: ignore[return-value]
            async with asyncio.timeout(timeout):
                data = await reader.read(64 * 1024)
            conn.receive_data(data)

    async def _handle(
        self, conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
        req: h11.Request, peer: str,
    ) -> tuple[int, bytes]:
        headers = {k.lower(): v for k, v in req.headers}
        target = req.target.split(b"?", 1)[0].decode("latin-1")
        length = headers.get(b"content-length")
        if req.method != b"POST":
            self._reject(f"{req.method.decode('latin-1')} {target}: only POST", peer)
            return 405, _error("only POST")
        if target != self.path:
            self._reject(f"POST to {target}, expected {self.path}", peer)
            return 404, _error(f"the camera push URL is {self.path}")
        if length is None or not length.isdigit():
            self._reject("POST without a Content-Length", peer)
            return 411, _error("Content-Length required")
        if int(length) > self.max_body:
            self._reject(f"body of {int(length)} bytes over {self.max_body}", peer)
            return 413, _error(f"body over {self.max_body} bytes")
        if conn.they_are_waiting_for_100_continue:  # libcurl asks before a large body
            writer.write(conn.send(h11.InformationalResponse(status_code=100, headers=[])) or b"")
        body = bytearray()
        async with asyncio.timeout(BODY_TIMEOUT_S):
            while True:
                event = await self._next(conn, reader, READ_TIMEOUT_S)
                if isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
                else:
                    raise ConnectionError("connection closed inside a request body")
        ctype = headers.get(b"content-type", b"").lower()
        if ctype.startswith((b"multipart/form-data", b"application/x-www-form-urlencoded")):
            self.heartbeats += 1  # heartbeat or device registration (form posts)
            log.debug("%s: anpr http: camera heartbeat from %s", self.device_id, peer)
            return 200, b"{}"
        pushed = decode_push(bytes(body))
        if pushed.reason is not None:
            self._reject(pushed.reason, peer)
            return 400, _error(pushed.reason)
        if pushed.read is not None:
            self.reads += 1
            self.on_read(pushed.read)
        elif pushed.note is not None:
            log.info("%s: anpr http: %s (from %s)", self.device_id, pushed.note, peer)
        return 200, response_body(pushed)


async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Close without losing the answer: after a refusal the peer may still be sending a body we
    did not read, and closing on unread data resets the connection before it reads our 4xx. So
    shut our side, discard what still comes (bounded in time and bytes), then close."""
    with contextlib.suppress(Exception):
        if writer.can_write_eof():
            writer.write_eof()
        async with asyncio.timeout(LINGER_S):
            discarded = 0
            while discarded < LINGER_BYTES and (chunk := await reader.read(64 * 1024)):
                discarded += len(chunk)
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()


def _error(reason: str) -> bytes:
    return msgspec.json.encode({"error": reason})
