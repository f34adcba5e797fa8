"""Load generator: many simulated weighbridges publishing valid contract `Weighing` messages.

Several OS processes (one Python MQTT client tops out well below what the broker takes),
each a paho client at QoS 1 (driven from the publishing thread: mqttpub.py) speaking for
`devices` devices in turn. Every message is what a
real device sends: a per-device `msg_id` (`device:epoch:seq`, seq from 1), its own topic, and
`ts` = the moment it was sent, so the sink's latency (now − ts) is device-to-InfluxDB.
"""

from __future__ import annotations

import multiprocessing
import time
import zlib
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from contract.acks import ack_topic
from contract.codec import encode
from contract.events import Direction, WasteCategory, Weighing
from contract.msgid import make_msg_id
from contract.topics import mqtt_topic
from wastestream.bench.mqttpub import DrivenPublisher

CATEGORIES = (WasteCategory.KITCHEN, WasteCategory.RESIDUAL, WasteCategory.RECYCLABLE,
              WasteCategory.CONSTRUCTION)
MAX_BACKLOG = 20_000
"""Unacknowledged publishes at which a publisher waits: memory stays bounded when the broker lags."""
BURST = 500
"""Messages queued before they are written and the acks read (one tick at most)."""
TICK_S = 0.01
"""Sleep when nothing is due: a tick's messages (rate x 10 ms) go out in one burst. At 3,000 msg/s the
publisher cost 87 µs of CPU per message with 2 ms ticks, 74 with 4 ms, 58 with 10 ms (wake-ups)."""


@dataclass(frozen=True)
class LoadSpec:
    """One publisher process. `rate` is msg/s for this process; 0 means as fast as it can."""

    host: str
    port: int
    prefix: str
    """Device ids are `{prefix}d{i}`: unique per run, step and process, so seqs start afresh."""
    devices: int
    sites: int
    rate: float
    duration_s: float
    start_at: float
    """Wall-clock start, so all processes of a step begin together after their imports."""
    epoch: int = 1
    topic_root: str | None = None
    """None: the contract topic ws/v1/{site}/weighbridge/{device}/weighing; else `{root}/{site}/{device}`."""
    max_messages: int = 10_000_000
    ack_timeout_s: float = 15.0
    confirm: bool = False
    """Ask for a pipeline confirmation per message (MQTT 5 Response Topic), as an edge agent does."""


@dataclass(frozen=True)
class LoadResult:
    prefix: str
    sent: int
    acked: int
    first_send: float
    last_send: float
    last_ack: float


def weighing(device: str, site: str, epoch: int, seq: int, ts: datetime) -> Weighing:
    """A valid ticket; weights vary with seq so sums are not trivially constant.

    Category and origin are the device's own (fixed per device, as citygen.py's weighbridges
    take their facility's stream): they are InfluxDB tags, and rotating them per ticket made
    ~28 series per device, so with each step's new devices nearly every point was a NEW series
    (20,140 series for 20,140 points in one step): InfluxDB's index inserts, not the pipeline,
    were then its cost (issue 14)."""
    gross = 20_000.0 + (seq % 97) * 50.0
    tare = 12_000.0
    home = zlib.crc32(device.encode())
    return Weighing(
        msg_id=make_msg_id(device, epoch, seq), device_id=device, site_id=site, ts=ts,
        ticket_id=f"T{epoch}-{seq}", plate=f"B{seq % 10000:05d}", direction=Direction.INBOUND,
        gross_kg=gross, tare_kg=tare, net_kg=gross - tare, category=CATEGORIES[home % len(CATEGORIES)],
        origin=f"area-{home % 7}",
    )


def device_ids(spec: LoadSpec) -> list[tuple[str, str, str]]:
    """(device, site, topic) for each simulated device of a publisher."""
    out = []
    for i in range(spec.devices):
        device, site = f"{spec.prefix}d{i}", f"{spec.prefix}s{i % max(1, spec.sites)}"
        topic = (mqtt_topic(site, "weighbridge", device, "weighing") if spec.topic_root is None
                 else f"{spec.topic_root}/{site}/{device}")
        out.append((device, site, topic))
    return out


def _confirm_props(site: str) -> Properties:
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = ack_topic(site)
    return props


def publish(spec: LoadSpec) -> LoadResult:
    """Publish at `spec.rate` for `spec.duration_s` (bounded by `max_messages`), then await acks.

    One thread drives the client (mqttpub.DrivenPublisher): each tick builds and queues the
    messages due, writes them and reads the acks that have come; `ts` is stamped as each message
    is built, microseconds before its write."""
    acked = 0
    last_ack = 0.0

    def on_ack(_mid: int) -> None:
        nonlocal acked, last_ack
        acked += 1
        last_ack = time.time()

    pub = DrivenPublisher(f"bench-pub-{spec.prefix}", spec.host, spec.port, on_ack)
    devices = device_ids(spec)
    seqs = [0] * len(devices)
    props = [_confirm_props(site) if spec.confirm else None for _, site, _ in devices]
    sent, first_send, last_send = 0, 0.0, 0.0
    while time.time() < spec.start_at:
        pub.pump(min(0.05, max(0.0, spec.start_at - time.time())))
    t0 = time.time()
    try:
        while sent < spec.max_messages:
            now = time.time()
            elapsed = now - t0
            if elapsed >= spec.duration_s:
                break
            due = spec.max_messages - sent if spec.rate <= 0 else int(spec.rate * elapsed) + 1 - sent
            due = min(due, MAX_BACKLOG - (sent - acked), BURST)
            if due <= 0:
                pub.pump()
                time.sleep(TICK_S)
                continue
            for _ in range(due):
                k = sent % len(devices)
                device, site, topic = devices[k]
                seqs[k] += 1
                pub.publish(topic, encode(weighing(device, site, spec.epoch, seqs[k], datetime.now(UTC))),
                            props[k])
                sent += 1
            pub.pump()
            if not first_send:
                first_send = now
            last_send = time.time()
        deadline = time.time() + spec.ack_timeout_s
        while acked < sent and time.time() < deadline:
            pub.pump(0.01)
    finally:
        pub.close()
    return LoadResult(spec.prefix, sent, acked, first_send, last_send, last_ack)


class LoadGen:
    """Run several publisher processes in the background; poll `done()`, then `results()`."""

    def __init__(self, specs: list[LoadSpec]) -> None:
        self.specs = specs
        self._pool = ProcessPoolExecutor(len(specs), mp_context=multiprocessing.get_context("spawn"))
        self._futures: list[Future[LoadResult]] = [self._pool.submit(publish, s) for s in specs]

    @property
    def pids(self) -> dict[str, int]:
        """The publisher processes (for their CPU): the pool starts one per spec as they are submitted."""
        return {f"loadgen-{i}": pid for i, pid in enumerate(self._pool._processes or {})}

    def done(self) -> bool:
        return all(f.done() for f in self._futures)

    def results(self, timeout: float) -> list[LoadResult]:
        try:
            return [f.result(timeout) for f in self._futures]
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)


def specs_for(host: str, port: int, prefix: str, rate: float, duration_s: float, procs: int,
              devices: int, *, topic_root: str | None = None, start_delay_s: float = 2.0,
              confirm: bool = False) -> list[LoadSpec]:
    """Split a total rate and device count over `procs` publisher processes."""
    start_at = time.time() + start_delay_s
    per_rate = rate / procs if rate > 0 else 0.0
    per_devices = max(1, devices // procs)
    return [LoadSpec(host, port, f"{prefix}p{i}", per_devices, max(1, per_devices // 10), per_rate,
                     duration_s, start_at, topic_root=topic_root, confirm=confirm) for i in range(procs)]
