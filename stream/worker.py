"""The worker's entry point (`wastestream worker -l info`, or `python -m stream.worker worker`).

Apart from stream/app.py so that the agents, which import the app, never import what runs it:
`app.main()` runs Faust's autodiscovery (the app's AGENT_PACKAGES) and then its CLI.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import sys
from collections.abc import Sequence
from pathlib import Path

from stream.app import app, settings
from stream.metrics import install_worker_endpoint, pop_metrics_port
from stream.topics_admin import ensure_topics
from wastestream.foundation import cliutil, eventloop, logs

_FAUST_LEVELS = {"CRITICAL": "crit", "WARNING": "warn"}  # Faust's -l names; the others are the same


def faust_args(args: Sequence[str]) -> list[str]:
    """`--log-level LEVEL` (every command's spelling) as Faust's `--loglevel`, in its level names."""
    out: list[str] = []
    items = iter(args)
    for arg in items:
        name, eq, value = arg.partition("=")
        if name != "--log-level":
            out.append(arg)
            continue
        level = logs.level_name(value if eq else next(items, "info"))
        out += ["--loglevel", _FAUST_LEVELS.get(level, level.lower())]
    return out


async def ensure_internal_topics() -> None:
    """Create the app's own topics (table changelogs, compacted; the agents' internal topics) before
    Faust starts. Why: on a Kafka started moments before, Faust's consumer sometimes subscribed
    before a changelog it had just created was in its metadata; the assignor skipped the topic and
    the agent crashed on PartitionsMismatch in a loop (`make demo` on a fresh machine hung: no
    truck data). Created ahead, they are in the metadata from the start."""
    app.discover()
    changelogs = {t.changelog_topic.get_topic_name() for t in app.tables.values()}
    internal = {name for agent in app.agents.values() for name in getattr(agent.channel, "topics", ())
                if name.startswith(f"{settings.faust_app_id}-")}
    await ensure_topics(settings.kafka_bootstrap, settings.kafka_partitions, sorted(changelogs | internal),
                        configs={name: {"cleanup.policy": "compact"} for name in changelogs})


GC_THRESHOLDS = (50_000, 20, 100)
"""Python's default (700, 10, 10) runs a young collection every 700 net allocations, and every
Kafka record allocates dozens of objects (aiokafka, Faust, our decode): ~10 % of an agent's CPU
went to collections that find nothing to free (the objects are short-lived and acyclic)."""


def tune_gc() -> None:
    """Fewer collections, and none over what was loaded at start (`gc.freeze`: modules, rules)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def main(argv: Sequence[str] | None = None) -> int:
    """Run Faust's CLI (`worker --log-level info`, ...) after making sure the source topics exist.

    Faust's own handler writes our format (foundation/logs.py: text, or JSON with WS_LOG_FORMAT)."""
    args = faust_args(sys.argv[1:] if argv is None else argv)
    app.conf.logging_config = logs.mode_logging_config()
    wants_help = any(a in ("-h", "--help") for a in args)
    if args[:1] == ["worker"] and not wants_help:  # help needs no Kafka
        args, port = pop_metrics_port(args, settings.metrics_port)  # --metrics-port N
        install_worker_endpoint(app, dataclasses.replace(settings, metrics_port=port))
        eventloop.install()
        try:
            asyncio.run(ensure_topics(settings.kafka_bootstrap, settings.kafka_partitions))
            asyncio.run(ensure_internal_topics())
        except TimeoutError as exc:  # Kafka unreachable: a reason, not a traceback
            print(f"wastestream worker: {exc}", file=sys.stderr)
            return cliutil.EXIT_FAILURE
        if settings.faust_web_port is None and "--with-web" not in args:
            args.append("--without-web")  # Faust's CLI would bind 6066 anyway; workers share a host
    if args[:1] == ["worker"] and not sys.stdout.isatty():
        args.insert(0, "--quiet")  # no console banner in a log file (its box and ƒaµS† come out garbled)
    sys.argv = ["wastestream", *args]  # Faust's usage line then reads `wastestream worker [OPTIONS]`
    tune_gc()
    Path(app.conf.datadir).parent.mkdir(parents=True, exist_ok=True)  # Faust makes the last part only
    try:
        app.main()
    finally:
        if wants_help:  # after Faust's (click's) own help
            print(f"\n  --log-level LEVEL is accepted for Faust's -l/--loglevel.\n\n{cliutil.EPILOG}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
