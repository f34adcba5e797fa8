"""Prometheus metrics, `/healthz` and `/readyz` for every long-running process (one home for all).

The bridge, the Faust workers, the alert service and the edge agent each call `serving(...)` with
their port (`WS_METRICS_PORT` or `--metrics-port`; 0 = off) and their readiness checks. One small
HTTP server per process, on a thread of its own (stdlib `wsgiref` + prometheus-client, so an edge
box needs neither aiohttp nor Faust):

    GET /metrics   Prometheus text format: the process's own counters plus process basics
                   (CPU, memory, open files, GC: prometheus-client's default collectors)
    GET /healthz   liveness: 200 when the process's asyncio loop runs a callback within
                   `loop_timeout_s`; 503 with the reason when it is blocked or gone
    GET /readyz    readiness: liveness, then every check of the process (each returns None or
                   the reason it is not ready); 200 `ready`, or 503 with one reason per line

Why a thread and not a route on the process's own loop: a server on a blocked loop answers
nothing, and a probe that times out says less than one that answers "loop blocked for 2 s".
The checks run on the server's thread, so they only read state or do bounded blocking I/O.

Hot path: the message counters (`ws_messages_{in,out,deadlettered}_total{topic}`) are plain ints
per topic read at scrape time (`TopicCounter`): a message costs one dict add, no label lookup and
no lock (measured: `python -m wastestream.bench.metrics_overhead`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import REGISTRY, CollectorRegistry, disable_created_metrics, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)
disable_created_metrics()  # no `_created` twin of every counter: half the lines, no use on our dashboards

Check = Callable[[], str | None]
"""A readiness check: None when fine, else why the process is not ready (one short line)."""

class TopicCounter:
    """A Prometheus counter per topic kept as plain ints: `inc` is one dict add (no lock, no label
    lookup), and the registry reads a copy at scrape time (`family`).

    Why not prometheus-client's Counter: its child's `inc` takes a lock, several times the cost of
    the add (wastestream.bench.metrics_overhead), for processes that count from one thread, their
    event loop. A process that counts from several threads (the edge's device threads and MQTT
    pump) uses `inc_locked`."""

    __slots__ = ("_lock", "counts", "documentation", "name")

    def __init__(self, name: str, documentation: str) -> None:
        self.name, self.documentation = name, documentation
        self.counts: dict[str, float] = {}
        """topic -> count; a hot path may add to a key it bound (`inc(topic, 0)`) directly."""
        self._lock = threading.Lock()

    def inc(self, topic: str, n: float = 1) -> None:
        counts = self.counts
        try:
            counts[topic] += n
        except KeyError:  # the first of a topic
            counts[topic] = n

    def inc_locked(self, topic: str, n: float = 1) -> None:
        with self._lock:
            self.inc(topic, n)

    def value(self, topic: str) -> float:
        return self.counts.get(topic, 0)

    def family(self) -> CounterMetricFamily:
        family = CounterMetricFamily(self.name, self.documentation, labels=["topic"])
        for topic, n in sorted(self.counts.copy().items()):  # copy(): atomic against the counting thread
            family.add_metric([topic], n)
        return family


class _Counters(Collector):
    def __init__(self, counters: Iterable[TopicCounter]) -> None:
        self.counters = list(counters)

    def describe(self) -> list[CounterMetricFamily]:
        return [CounterMetricFamily(c.name, c.documentation, labels=["topic"]) for c in self.counters]

    def collect(self) -> Iterator[CounterMetricFamily]:
        for counter in self.counters:
            yield counter.family()


messages_in = TopicCounter("ws_messages_in", "Messages the process took in, per source topic")
messages_out = TopicCounter("ws_messages_out", "Messages the process passed on for good (in Kafka, handed "
                                               "to the analyses, stored, delivered), per topic")
messages_deadlettered = TopicCounter("ws_messages_deadlettered", "Messages the process dead-lettered, per "
                                                                 "topic they came from")
REGISTRY.register(_Counters([messages_in, messages_out, messages_deadlettered]))


class OnLoop:
    """A check that must run on the process's loop (it touches state the loop owns, e.g. a SQLite
    connection): the probe schedules it there and waits at most its loop time-out."""

    def __init__(self, fn: Check) -> None:
        self.fn = fn

    def __call__(self) -> str | None:  # when called directly (no probe): as a plain check
        return self.fn()


class Probe:
    """Liveness of one asyncio loop and readiness of the process, asked from another thread."""

    def __init__(self, component: str, loop: asyncio.AbstractEventLoop, checks: Mapping[str, Check],
                 loop_timeout_s: float = 2.0) -> None:
        self.component, self.loop, self.checks = component, loop, dict(checks)
        self.loop_timeout_s = loop_timeout_s

    def live(self) -> str | None:
        """None when the loop ran a callback within the time-out; else why not."""
        answered = threading.Event()
        try:
            self.loop.call_soon_threadsafe(answered.set)
        except RuntimeError:  # closed
            return "event loop closed"
        if not answered.wait(self.loop_timeout_s):
            return f"event loop did not run a callback within {self.loop_timeout_s:g} s (blocked)"
        return None

    def _on_loop(self, fn: Check) -> str | None:
        done: concurrent.futures.Future[str | None] = concurrent.futures.Future()

        def run() -> None:
            try:
                done.set_result(fn())
            except Exception as exc:
                done.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        try:
            return done.result(self.loop_timeout_s)
        except TimeoutError:
            return f"no answer from the event loop within {self.loop_timeout_s:g} s"

    def not_ready(self) -> list[str]:
        """Every reason the process is not ready; empty when it is."""
        dead = self.live()
        if dead is not None:
            return [dead]
        reasons = []
        for name, check in self.checks.items():
            try:
                reason = self._on_loop(check.fn) if isinstance(check, OnLoop) else check()
            except Exception as exc:  # a broken check must say so, not kill the server thread
                reason = f"check failed: {type(exc).__name__}: {exc}"
            if reason is not None:
                reasons.append(f"{name}: {reason}")
        return reasons


class _ReadyCollector(Collector):
    """`ws_ready{component}` 1/0 at each scrape, from the same checks as /readyz (for the dashboard)."""

    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    def describe(self) -> list[GaugeMetricFamily]:
        return [GaugeMetricFamily("ws_ready", "1 when /readyz answers ready", labels=["component"])]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("ws_ready", "1 when /readyz answers ready", labels=["component"])
        family.add_metric([self.probe.component], 0.0 if self.probe.not_ready() else 1.0)
        yield family


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every 15 s would flood the log."""


def wsgi_app(probe: Probe, registry: CollectorRegistry = REGISTRY) -> Callable[..., Iterable[bytes]]:
    """/metrics, /healthz, /readyz; anything else is a 404."""
    metrics = make_wsgi_app(registry)

    def text(start_response: Callable[..., Any], status: str, body: str) -> list[bytes]:
        data = body.encode("utf-8")
        start_response(status, [("Content-Type", "text/plain; charset=utf-8"),
                                ("Content-Length", str(len(data)))])
        return [data]

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return text(start_response, "405 Method Not Allowed", "GET only\n")
        if path == "/metrics":
            return metrics(environ, start_response)  # type: ignore[no-any-return]
        if path == "/healthz":
            dead = probe.live()
            return text(start_response, "200 OK", "alive\n") if dead is None else \
                text(start_response, "503 Service Unavailable", f"not alive: {dead}\n")
        if path == "/readyz":
            reasons = probe.not_ready()
            if not reasons:
                return text(start_response, "200 OK", "ready\n")
            return text(start_response, "503 Service Unavailable",
                        "".join(f"not ready: {r}\n" for r in reasons))
        return text(start_response, "404 Not Found", "/metrics, /healthz or /readyz\n")

    return app


class MetricsServer:
    """The running endpoint; `port` is the bound one, `close()` stops it and its `ws_ready`."""

    def __init__(self, probe: Probe, host: str, port: int, registry: CollectorRegistry = REGISTRY) -> None:
        self.probe, self.registry = probe, registry
        self._httpd = make_server(host, port, wsgi_app(probe, registry), _Server, _QuietHandler)
        self.host, self.port = host, self._httpd.server_address[1]
        self._ready = _ReadyCollector(probe)
        registry.register(self._ready)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.5},
                                        name=f"metrics-{probe.component}", daemon=True)
        self._thread.start()
        log.info("%s metrics on http://%s:%d/metrics (/healthz, /readyz)", probe.component, host, self.port)

    def close(self) -> None:
        with contextlib.suppress(KeyError):
            self.registry.unregister(self._ready)
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def serve(component: str, port: int, checks: Mapping[str, Check], *, host: str = "127.0.0.1",
          loop: asyncio.AbstractEventLoop | None = None) -> MetricsServer | None:
    """Start the endpoint for the running loop (or `loop`); None when `port` is 0 (off)."""
    if not port:
        return None
    probe = Probe(component, loop or asyncio.get_running_loop(), checks)
    try:
        return MetricsServer(probe, host, port)
    except OSError as exc:  # the port is taken, or the address not ours: the data path runs on
        log.error("%s: no /metrics, /healthz, /readyz: cannot listen on %s:%d (%s); check WS_METRICS_PORT "
                  "or --metrics-port (each process on a host needs its own)", component, host, port,
                  exc.strerror or exc)
        return None


@contextlib.contextmanager
def serving(component: str, port: int, checks: Mapping[str, Check], *, host: str = "127.0.0.1",
            loop: asyncio.AbstractEventLoop | None = None) -> Iterator[MetricsServer | None]:
    """`with serving("bridge", port, checks):` the endpoint lives as long as the block."""
    server = serve(component, port, checks, host=host, loop=loop)
    try:
        yield server
    finally:
        if server is not None:
            server.close()
