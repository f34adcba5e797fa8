"""wastestream/foundation/observability.py: what /healthz, /readyz and /metrics answer, on a real
endpoint (a thread) for a real asyncio loop (another thread)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from wastestream.foundation import observability
from wastestream.foundation.observability import Check, MetricsServer, OnLoop, Probe


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def test_port_0_is_off(loop: asyncio.AbstractEventLoop) -> None:
    assert observability.serve("x", 0, {}, loop=loop) is None


def test_a_taken_port_is_logged_and_the_process_goes_on(loop: asyncio.AbstractEventLoop,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert observability.serve("bridge", taken.getsockname()[1], {}, loop=loop) is None
    assert "bridge: no /metrics, /healthz, /readyz: cannot listen on 127.0.0.1:" in caplog.text
    assert "each process on a host needs its own" in caplog.text


def test_readyz_gives_every_reason_and_healthz_stays_alive(loop: asyncio.AbstractEventLoop) -> None:
    state: dict[str, str | None] = {"mqtt": "not connected to broker:8883"}
    loop_thread: list[int] = []

    def on_loop() -> str | None:
        loop_thread.append(threading.get_ident())
        return None

    def broken() -> str | None:
        raise ValueError("bad")

    checks: dict[str, Check] = {"mqtt": lambda: state["mqtt"], "store": OnLoop(on_loop), "other": broken}
    server = observability.serve("x", free_port(), checks, loop=loop)
    assert server is not None
    try:
        status, body = get(server.port, "/readyz")
        assert status == 503
        assert body.splitlines() == ["not ready: mqtt: not connected to broker:8883",
                                     "not ready: other: check failed: ValueError: bad"]
        assert loop_thread and loop_thread[0] != threading.get_ident()  # ran on the loop's thread
        assert get(server.port, "/healthz") == (200, "alive\n")
        checks_ok: dict[str, Check] = {"mqtt": lambda: None}
        server.probe.checks = checks_ok
        assert get(server.port, "/readyz") == (200, "ready\n")
        assert get(server.port, "/elsewhere")[0] == 404
    finally:
        server.close()


def test_a_blocked_loop_is_not_alive(loop: asyncio.AbstractEventLoop) -> None:
    server = MetricsServer(Probe("x", loop, {}, loop_timeout_s=0.3), "127.0.0.1", free_port())
    try:
        loop.call_soon_threadsafe(time.sleep, 1.5)  # a callback that blocks the loop
        time.sleep(0.1)
        status, body = get(server.port, "/healthz")
        assert status == 503 and "did not run a callback within 0.3 s" in body, body
        status, body = get(server.port, "/readyz")
        assert status == 503 and "blocked" in body
        time.sleep(1.6)
        assert get(server.port, "/healthz")[0] == 200
    finally:
        server.close()


def test_ws_ready_follows_the_checks_and_leaves_with_the_server(loop: asyncio.AbstractEventLoop) -> None:
    registry = CollectorRegistry()
    state: dict[str, str | None] = {"reason": "no"}
    server = MetricsServer(Probe("thing", loop, {"c": lambda: state["reason"]}), "127.0.0.1", free_port(),
                           registry)

    def ready_value() -> float | None:
        _, body = get(server.port, "/metrics")
        return next((s.value for f in text_string_to_metric_families(body) for s in f.samples
                     if s.name == "ws_ready" and s.labels == {"component": "thing"}), None)

    try:
        assert ready_value() == 0
        state["reason"] = None
        assert ready_value() == 1
    finally:
        server.close()
    assert registry.get_sample_value("ws_ready", {"component": "thing"}) is None


def test_topic_counters_are_exposed_as_prometheus_counters(loop: asyncio.AbstractEventLoop) -> None:
    """The plain-int counters come out of /metrics as counters (`_total`), by topic."""
    before = observability.messages_in.value("t.test")
    for _ in range(1000):
        observability.messages_in.inc("t.test")
    observability.messages_in.inc_locked("t.test", 5)
    server = observability.serve("x", free_port(), {}, loop=loop)
    assert server is not None
    try:
        _, body = get(server.port, "/metrics")
    finally:
        server.close()
    [family] = [f for f in text_string_to_metric_families(body) if f.name == "ws_messages_in"]
    assert family.type == "counter"
    samples = {s.labels["topic"]: s.value for s in family.samples if s.name == "ws_messages_in_total"}
    assert samples["t.test"] == before + 1005


def test_bad_requests_are_refused_and_the_server_goes_on(loop: asyncio.AbstractEventLoop) -> None:
    """The endpoint is unauthenticated (loopback by default; an internal network in production): it
    answers GETs of three paths, refuses anything else, and survives garbage."""
    server = observability.serve("x", free_port(), {}, loop=loop)
    assert server is not None
    try:
        request = urllib.request.Request(f"http://127.0.0.1:{server.port}/metrics", data=b"x", method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert refused.value.code == 405
        assert get(server.port, "/" + "a" * 5000)[0] == 404
        assert get(server.port, "/metrics/../readyz")[0] == 404
        for garbage in (b"\x00\xff\r\n\r\n", b"GET " + b"/" * 70000 + b" HTTP/1.1\r\n\r\n", b"GET\r\n\r\n"):
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
                sock.sendall(garbage)
                sock.recv(100)
        assert get(server.port, "/healthz") == (200, "alive\n")
    finally:
        server.close()
