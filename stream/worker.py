"""The worker's entry point (`wastestream worker -l info`, or `python -m stream.worker worker`).

Apart from stream/app.py so that the agents, which import the app, never import what runs it:
`app.main()` runs Faust's autodiscovery (the app's AGENT_PACKAGES) and then its CLI.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from stream.app import app, settings
from stream.topics_admin import ensure_topics
from wastestream.foundation import eventloop


def main(argv: Sequence[str] | None = None) -> int:
    """Run Faust's CLI (`worker -l info`, ...) after making sure the source topics exist."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["worker"]:
        eventloop.install()
        asyncio.run(ensure_topics(settings.kafka_bootstrap, settings.kafka_partitions))
        if settings.faust_web_port is None and "--with-web" not in args:
            args.append("--without-web")  # Faust's CLI would bind 6066 anyway; workers share a host
    sys.argv = ["wastestream-worker", *args]
    app.main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
