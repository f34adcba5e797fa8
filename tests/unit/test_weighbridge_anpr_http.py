"""The plate cameras' HTTP push (AlarmInfoPlate) against a real server on loopback.

The bodies are written out by hand from the vendors' push protocol (臻识 / Vzenith "HTTP 推送协议",
section 2.1.1's field table), not made by our own encoder: `license`, `colorType` (2 = yellow),
`confidence` 1-100, `timeStamp.Timeval.sec/usec` (Unix time; the dec* fields are Beijing time),
`plateid`, `isoffline`; and the answer the protocol expects (`Response_AlarmInfoPlate`, never
`"info": "ok"`, which opens the barrier).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest

from edge.devices.weighbridge import anpr_http
from edge.devices.weighbridge.anpr import AnprLineReader, PlateRead
from edge.devices.weighbridge.anpr_http import AnprHttpServer, decode_push

PUSH = """{"AlarmInfoPlate": {"channel": 0, "deviceName": "IVS", "ipaddr": "192.168.1.100",
 "result": {"PlateResult": {"bright": 0, "carBright": 0, "carColor": 255, "colorType": 2,
  "colorValue": 0, "confidence": 96, "direction": 0, "imagePath": "/snapshot/lpr/tri_snap_24.jpg",
  "license": "桂B12345", "location": {"RECT": {"bottom": 674, "left": 1002, "right": 1263, "top": 565}},
  "timeStamp": {"Timeval": {"decday": 9, "dechour": 16, "decmin": 39, "decmon": 6, "decsec": 54,
   "decyear": 2023, "sec": 1686299994, "usec": 687772}},
  "timeUsed": 0, "triggerType": 4, "type": 4, "plateid": 21085, "isoffline": 0}},
 "serialno": "fe71e106-57263272"}}"""


def request(body: bytes, *, path: str = "/anpr", method: str = "POST", ctype: str = "application/json",
            length: int | None = None) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: edge\r\nContent-Type: {ctype}\r\n"
    if length is not None or method == "POST":
        head += f"Content-Length: {len(body) if length is None else length}\r\n"
    return head.encode() + b"\r\n" + body


class Served:
    def __init__(self) -> None:
        self.reads: list[PlateRead] = []
        self.server = AnprHttpServer("wb-1", self.reads.append, host="127.0.0.1", port=0, path="/anpr",
                                     max_body_bytes=64 * 1024)

    async def exchange(self, *raw: bytes) -> list[tuple[int, dict[str, object]]]:
        """Send requests on one connection; the (status, JSON body) of each answer."""
        assert self.server.bound_port is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", self.server.bound_port)
        out = []
        try:
            for data in raw:
                writer.write(data)
                await writer.drain()
                status_line = await asyncio.wait_for(reader.readline(), 5)
                if not status_line:
                    break
                headers = {}
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    k, _, v = line.decode().partition(":")
                    headers[k.strip().lower()] = v.strip()
                body = await reader.readexactly(int(headers["content-length"]))
                out.append((int(status_line.split()[1]), json.loads(body)))
        finally:
            writer.close()
        return out


def with_server(body: Callable[[Served], Awaitable[None]]) -> Served:
    """Run `body` against a fresh server on an ephemeral loopback port; the server afterwards."""
    served = Served()

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(served.server.serve(stop))
        while served.server.bound_port is None:
            await asyncio.sleep(0.01)
        try:
            await body(served)
        finally:
            stop.set()
            await task

    asyncio.run(main())
    return served


def test_a_plate_push_is_read_and_answered_as_the_protocol_says() -> None:
    with_server(_plate_push)


async def _plate_push(served: Served) -> None:
    [(status, body)] = await served.exchange(request(PUSH.encode()))
    assert status == 200
    reply = body["Response_AlarmInfoPlate"]
    assert isinstance(reply, dict)
    assert reply["info"] == "no" and reply["plateid"] == 21085 and "ContinuePushOffline" not in reply
    [read] = served.reads
    assert (read.plate, read.color, read.confidence, read.source) == ("桂B12345", "yellow", 96, "http")
    assert read.frame_ts == datetime(2023, 6, 9, 8, 39, 54, 687772, tzinfo=UTC)  # 16:39:54 Beijing


def test_an_offline_record_asks_for_the_next_one() -> None:
    with_server(_offline)


async def _offline(served: Served) -> None:
    body = PUSH.replace('"isoffline": 0', '"isoffline": 1').encode()
    [(status, reply)] = await served.exchange(request(body))
    inner = reply["Response_AlarmInfoPlate"]
    assert status == 200 and isinstance(inner, dict)
    assert inner["ContinuePushOffline"] == {"plateid": 21085, "continue": 1}


def test_keep_alive_heartbeat_and_no_plate_are_answered_without_a_read() -> None:
    with_server(_keep_alive)


async def _keep_alive(served: Served) -> None:
    heartbeat = request(b'--x\r\nContent-Disposition: form-data; name="serialno"\r\n\r\nd85b\r\n--x--\r\n',
                        ctype="multipart/form-data; boundary=x")
    no_plate = request(PUSH.replace("桂B12345", "_无_").encode())
    gio = request(b'{"AlarmGioIn": {"deviceName": "IVS", "result": {"TriggerResult": {"source": 3, '
                  b'"value": 1}}}}')
    answers = await served.exchange(heartbeat, no_plate, gio, request(PUSH.encode()))
    assert [s for s, _ in answers] == [200, 200, 200, 200]  # four requests on one connection
    assert [r.plate for r in served.reads] == ["桂B12345"] and served.server.heartbeats == 1


@pytest.mark.parametrize(("raw", "status", "reason"), [
    (request(b'{"AlarmInfoPlate": {"result": '), 400, "bad JSON"),
    (request(b"[" * 100_000 + b"]" * 100_000), 413, "over"),
    (request(b'{"a":' * 5000 + b"1" + b"}" * 5000), 400, "nested too deeply"),
    (request(PUSH.replace("桂B12345", "桂B<img src=x>").encode()), 400, "PLATE rule"),
    (request(PUSH.replace("桂B12345", "桂B1234567890123456").encode()), 400, "characters"),
    (request(b'{"AlarmInfoPlate": {"result": {"PlateResult": {"license": 12345}}}}'), 400,
     "not an AlarmInfoPlate"),
    (request(b'{"something": "else"}'), 400, "without AlarmInfoPlate"),
    (request(b"x" * 10, length=10 * 1024 * 1024), 413, "over"),
    (request(b"", method="GET"), 405, "only POST"),
    (request(PUSH.encode(), path="/other"), 404, "expected /anpr"),
    (b"POST /anpr HTTP/1.1\r\nHost: e\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 411,
     "Content-Length"),
])
def test_bad_input_gets_a_status_and_a_logged_reason(
    caplog: pytest.LogCaptureFixture, raw: bytes, status: int, reason: str
) -> None:
    async def body(served: Served) -> None:
        with caplog.at_level(logging.WARNING, logger="edge.weighbridge"):
            [(got, answer)] = await served.exchange(raw)
        assert got == status and served.reads == []
        assert reason in caplog.text and "wb-1: anpr http:" in caplog.text
        assert isinstance(answer.get("error"), str) and sum(served.server.rejected.values()) == 1
        [(after, _)] = await served.exchange(request(PUSH.encode()))  # the server still serves
        assert after == 200 and len(served.reads) == 1

    with_server(body)


def test_garbage_that_is_not_http_closes_the_connection_with_a_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def body(served: Served) -> None:
        with caplog.at_level(logging.WARNING, logger="edge.weighbridge"):
            assert await served.exchange(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\r\n\r\n") == []
        assert "bad HTTP request" in caplog.text
        [(after, _)] = await served.exchange(request(PUSH.encode()))
        assert after == 200

    with_server(body)


def test_decode_push_never_raises_on_any_prefix() -> None:
    body = PUSH.encode()
    for i in range(len(body)):
        pushed = decode_push(body[:i])
        assert pushed.reason is not None and pushed.read is None


def test_a_camera_asking_100_continue_gets_it_before_sending_the_body() -> None:
    async def body(served: Served) -> None:
        assert served.server.bound_port is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", served.server.bound_port)
        data = PUSH.encode()
        writer.write(f"POST /anpr HTTP/1.1\r\nHost: e\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(data)}\r\nExpect: 100-continue\r\n\r\n".encode())
        assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"HTTP/1.1 100")
        writer.write(data)
        assert b" 200 " in await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        writer.close()
        assert [r.plate for r in served.reads] == ["桂B12345"]

    with_server(body)


def test_a_body_trickled_slower_than_the_limit_is_cut(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(anpr_http, "BODY_TIMEOUT_S", 0.5)

    async def body(served: Served) -> None:
        assert served.server.bound_port is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", served.server.bound_port)
        writer.write(request(PUSH.encode())[:-100])  # all but the body's last 100 bytes
        with caplog.at_level(logging.WARNING, logger="edge.weighbridge"):
            assert await asyncio.wait_for(reader.read(), 5) == b""  # closed without an answer
        writer.close()
        assert served.reads == [] and "TimeoutError" in caplog.text

    with_server(body)


def test_a_no_plate_line_is_no_read() -> None:
    reader = AnprLineReader()
    assert reader.feed("PLATE 无牌\r\nPLATE UNKNOWN\r\nPLATE 桂B12345\r\n".encode()) == ["桂B12345"]
    assert reader.errors == 0
