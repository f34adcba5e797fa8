"""`wastestream alerts serve`: consume ws.alerts, store, push, serve the API, export to InfluxDB.

Consumption is at-least-once and decoupled from pushing: each alert is stored (with its
push jobs) in one SQLite transaction, and the Kafka offsets are committed only after the
records of a fetched batch are all stored. A crash re-delivers them; the store drops a
known alert_id, so nothing is stored or pushed twice. Pushing and InfluxDB export run in
their own tasks from the store, so a dead channel or InfluxDB never stops consumption.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from contract.codec import ContractError, decode
from contract.events import Alert
from contract.topics import DEADLETTER_TOPIC
from stream.alerting import metrics as alert_metrics
from stream.alerting.api import make_app
from stream.alerting.channels import Channel, build_channels
from stream.alerting.config import AlertsConfig
from stream.alerting.exporter import InfluxExporter
from stream.alerting.officer.escalation import Escalator
from stream.alerting.officer.pages import Officers
from stream.alerting.officer.wiring import link_signer, officer_app
from stream.alerting.pusher import Pusher
from stream.alerting.store import AlertStore, Outcome
from stream.deadletter import deadletter_record
from stream.rules import Rules, load_rules
from stream.sinks.config import SinkConfig
from stream.sinks.influx import InfluxSink, make_transport
from stream.topics_admin import ensure_topics
from wastestream.foundation.settings import Settings

log = logging.getLogger(__name__)


def default_db_path(settings: Settings) -> Path:
    return settings.run_dir / "alerts" / "alerts.db"


@dataclass
class ServiceStats:
    consumed: int = 0
    rejected: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    """new / duplicate / suppressed counts."""


class AlertService:
    def __init__(self, config: AlertsConfig, settings: Settings, *, default_cooldown_s: float,
                 token: str, port: int | None = None, db_path: Path | None = None,
                 channels: dict[str, Channel] | None = None, rules: Rules | None = None) -> None:
        self.config, self.settings, self.token = config, settings, token
        self.rules = load_rules() if rules is None else rules
        """The city's districts (which officers see an alert) and geofences (the alert page's map)."""
        self.default_cooldown_s = config.cooldown_s if config.cooldown_s is not None else default_cooldown_s
        self.port = config.api.port if port is None else port
        configured = Path(config.db_path) if config.db_path else default_db_path(settings)
        self.store = AlertStore(db_path or configured)
        self.signer = link_signer(config, self.store.path) if config.officer.enabled else None
        self.pusher = Pusher(self.store, build_channels(config) if channels is None else channels,
                             config.retry, config.max_in_flight,
                             linker=self.signer.link if self.signer else None,
                             escalation_channels=frozenset(
                                 c.name for c in config.channels if c.when == "escalate"))
        self.escalator = Escalator(self.store, config, self.pusher.wake)
        self.stats = ServiceStats()
        self.ready = asyncio.Event()
        self.bound_port: int | None = None
        self._producer: AIOKafkaProducer | None = None
        self.exporter: InfluxExporter | None = None
        self.officers: Officers | None = None

    def cooldown_s(self, kind: str) -> float:
        return self.config.cooldown_by_kind.get(kind, self.default_cooldown_s)

    def handle(self, payload: bytes) -> Outcome | None:
        """Store one ws.alerts record; None if it is not a valid alert (dead-lettered by the caller)."""
        alert = decode(payload, Alert)
        assert isinstance(alert, Alert)
        channels = self.config.routes(alert.kind, alert.severity.value)
        result = self.store.ingest(alert, self.cooldown_s(alert.kind), channels,
                                   self.rules.district_of(alert.site_id))
        self.stats.consumed += 1
        self.stats.outcomes[result.outcome.value] += 1
        log.info("alert %s: %s (primary %s)", alert.alert_id, result.outcome.value, result.primary_id)
        return result.outcome

    async def _deadletter(self, record: bytes) -> None:
        if self._producer is not None:
            await self._producer.send_and_wait(DEADLETTER_TOPIC, record)

    async def _consume(self, stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(
            self.config.kafka_topic, bootstrap_servers=self.settings.kafka_bootstrap,
            group_id=self.config.kafka_group, enable_auto_commit=False, auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=500, max_records=500)
                for records in batches.values():
                    for record in records:
                        await self._handle_record(record.value or b"", record.topic)
                if batches:
                    await consumer.commit()  # only after every record of the batch is stored
        finally:
            await consumer.stop()

    async def _handle_record(self, payload: bytes, topic: str) -> None:
        """One record: stored, or dead-lettered with the reason. ANY exception is the record's
        (msgspec's RecursionError on deep nesting, a store error): one poison record must not
        stop the consumer, which would crash on its redelivery for ever."""
        try:
            outcome = self.handle(payload)
        except Exception as exc:
            self.stats.rejected += 1
            alert_metrics.rejected(topic)
            reason = str(exc) if isinstance(exc, ContractError) else f"{type(exc).__name__}: {exc}"
            reason = reason.encode("utf-8", "backslashreplace").decode("utf-8")[:1000]
            log.warning("rejected record on %s (%d bytes): %s", topic, len(payload), reason)
            await self._deadletter(deadletter_record(f"alert service: {reason}", topic, payload))
            return
        alert_metrics.stored(topic, str(outcome))
        if outcome is Outcome.NEW:
            self.pusher.wake()
        if self.exporter is not None:
            self.exporter.wake()

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop` is set; then stop consuming, let in-flight pushes finish briefly, flush InfluxDB."""
        await ensure_topics(self.settings.kafka_bootstrap, self.settings.kafka_partitions,
                            [self.config.kafka_topic, DEADLETTER_TOPIC])
        self._producer = AIOKafkaProducer(bootstrap_servers=self.settings.kafka_bootstrap, acks="all")
        await self._producer.start()
        if self.config.influx:
            sink = InfluxSink(make_transport(self.settings), self._deadletter,
                              SinkConfig(batch_size=500, flush_ms=200))
            self.exporter = InfluxExporter(self.store, sink)
        on_change = self.exporter.wake if self.exporter else (lambda: None)
        pages = None
        if self.config.officer.enabled:
            pages, self.officers = officer_app(self.config, self.settings, self.rules, self.store, on_change)
        runner = web.AppRunner(make_app(self.store, self.token, on_change, pages), access_log=None)
        await runner.setup()
        escalate: asyncio.Task[None] | None = None
        site = web.TCPSite(runner, self.config.api.host, self.port)
        try:
            await site.start()
            server = getattr(site, "_server", None)
            sockets = getattr(server, "sockets", None) or []
            self.bound_port = sockets[0].getsockname()[1] if sockets else self.port
            if self.exporter is not None:
                await self.exporter.start()
            await self.pusher.start()
            log.info("alerts API on http://%s:%s; consuming %s as group %s", self.config.api.host,
                     self.bound_port, self.config.kafka_topic, self.config.kafka_group)
            self.ready.set()
            escalate = asyncio.create_task(self.escalator.run(stop), name="alert-escalation")
            consume = asyncio.create_task(self._consume(stop), name="alert-consumer")
            stopped = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait({consume, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if consume in done:
                stopped.cancel()
                consume.result()  # a crash of the consumer is the service's crash
            else:
                await consume
        finally:
            if escalate is not None:
                escalate.cancel()
                await asyncio.gather(escalate, return_exceptions=True)
            await self.pusher.stop()
            if self.exporter is not None:
                await self.exporter.stop()
            await runner.cleanup()
            await self._producer.stop()
            self.store.close()
