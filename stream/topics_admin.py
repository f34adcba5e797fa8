"""Create the contract's Kafka topics: the broker has auto-create off, so we own them.

Idempotent (existing topics are left alone, a concurrent creator is tolerated) and
bounded in time, so deploy scripts and tests can call it on every start.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Iterable, Mapping, Sequence

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from contract.topics import ALL_KAFKA_TOPICS
from wastestream.foundation import cliutil, logs
from wastestream.foundation.settings import load_settings

log = logging.getLogger(__name__)

TOPIC_ALREADY_EXISTS = TopicAlreadyExistsError.errno


async def ensure_topics(
    bootstrap: str,
    partitions: int,
    topics: Iterable[str] = ALL_KAFKA_TOPICS,
    replication: int = 1,
    timeout_s: float = 30.0,
    configs: Mapping[str, dict[str, str]] | None = None,
) -> list[str]:
    """Create whichever of `topics` are missing (with `configs[topic]`, e.g. a compacted changelog);
    return the ones created. Raise on timeout."""
    wanted = list(topics)
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [t for t in wanted if t not in existing]
            if missing:
                response = await admin.create_topics(
                    [NewTopic(t, num_partitions=partitions, replication_factor=replication,
                              topic_configs=(configs or {}).get(t, {})) for t in missing],
                    timeout_ms=10_000,
                )
                _raise_for_errors(response)
                log.info("created Kafka topics %s (%d partitions)", missing, partitions)
            return missing
        except (KafkaError, OSError) as exc:  # broker starting or restarting: retry until the deadline
            last_error = exc
            log.warning("Kafka not ready at %s (%s); retrying", bootstrap, exc)
            await asyncio.sleep(1.0)
        finally:
            await admin.close()
    raise TimeoutError(f"could not ensure Kafka topics at {bootstrap} in {timeout_s}s: {last_error}")


def _raise_for_errors(response: object) -> None:
    """CreateTopics answers per topic; 'already exists' means another process won the race."""
    for topic, code, *rest in getattr(response, "topic_errors", ()):
        if code not in (0, TOPIC_ALREADY_EXISTS):
            message = rest[0] if rest else ""
            raise KafkaError(f"creating {topic}: error {code} {message}")


def main(argv: Sequence[str] | None = None) -> int:
    settings = load_settings()
    parser = cliutil.parser("wastestream topics", __doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default=settings.kafka_bootstrap)
    parser.add_argument("--partitions", type=int, default=settings.kafka_partitions)
    parser.add_argument("--timeout", type=float, default=30.0)
    cliutil.add_log_level(parser)
    args = parser.parse_args(argv)
    logs.configure(args.log_level)
    try:
        created = asyncio.run(ensure_topics(args.bootstrap, args.partitions, timeout_s=args.timeout))
    except (TimeoutError, KafkaError) as exc:  # Kafka unreachable, or it refused a topic
        print(f"wastestream topics: {exc}", file=sys.stderr)
        return cliutil.EXIT_FAILURE
    print(f"created: {', '.join(created) or 'none'}; all present: {', '.join(ALL_KAFKA_TOPICS)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
