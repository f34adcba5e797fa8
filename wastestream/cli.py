"""`wastestream`: one console script, one subcommand per part of the pipeline.

Each subcommand imports its part lazily so that, say, `wastestream schema` on a
vendor's laptop does not pull in Faust.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import subprocess
import sys
from collections.abc import Callable, Sequence

from wastestream.foundation.settings import REPO_ROOT


def _schema(args: argparse.Namespace, rest: list[str]) -> int:
    from contract.jsonschema import contract_schema_json

    text = contract_schema_json() + "\n"
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)
    return 0


def _sim(args: argparse.Namespace, rest: list[str]) -> int:
    from firmware_sim.city import main

    return main(rest)


def _edge(args: argparse.Namespace, rest: list[str]) -> int:
    if rest[:1] == ["probe"]:  # `edge probe --modbus|--serial|--jt808 ...`: edge/probe/, one module per mode
        from edge.probe import main as probe

        return probe(rest[1:])
    from edge.agent import main

    return main(rest) or 0


def _bridge(args: argparse.Namespace, rest: list[str]) -> int:
    from stream.bridge import main

    return main(rest) or 0


def _worker(args: argparse.Namespace, rest: list[str]) -> int:
    from stream.worker import main

    return main(["worker", *rest]) or 0


def _topics(args: argparse.Namespace, rest: list[str]) -> int:
    from stream.topics_admin import main

    return main(rest) or 0


def _demo(args: argparse.Namespace, rest: list[str]) -> int:
    from wastestream.demo import main

    return main(rest)


def _alerts(args: argparse.Namespace, rest: list[str]) -> int:
    from stream.alerting.cli import main

    return main(rest)


def _bench(args: argparse.Namespace, rest: list[str]) -> int:
    from wastestream.bench.run import main

    return main(rest)


def _chaos(args: argparse.Namespace, rest: list[str]) -> int:
    from wastestream.chaos import main

    return main(rest)


def _report(args: argparse.Namespace, rest: list[str]) -> int:
    from wastestream.report.cli import report_main

    return report_main(rest)


def _indicators(args: argparse.Namespace, rest: list[str]) -> int:
    from wastestream.report.cli import indicators_main

    return indicators_main(rest)


def _import(args: argparse.Namespace, rest: list[str]) -> int:
    from wastestream.importer.cli import main

    return main(rest)


def _dashboards(args: argparse.Namespace, rest: list[str]) -> int:
    from dashboards.cli import main

    return main(rest)


def _services(args: argparse.Namespace, rest: list[str]) -> int:
    script = REPO_ROOT / "deploy" / "local" / "services.sh"
    return subprocess.call(["bash", str(script), *rest])


COMMANDS: dict[str, tuple[Callable[[argparse.Namespace, list[str]], int], str]] = {
    "sim": (_sim, "run the simulated city: devices speaking their wire protocols on ptys"),
    "edge": (_edge, "run an edge agent for one site: `edge run --config site.yaml`, or `edge probe`"),
    "bridge": (_bridge, "move validated device messages from MQTT to Kafka"),
    "worker": (_worker, "run a Faust stream worker (tonnage, ...) writing to InfluxDB"),
    "topics": (_topics, "create the Kafka topics of the contract (idempotent)"),
    "demo": (_demo, "the whole pipeline on simulated devices for DURATION seconds, then a tonnage table"),
    "alerts": (_alerts, "alert service for enforcement: serve | list | show | ack | close | stats"),
    "bench": (_bench, "throughput and latency of the pipeline against raw limits and a naive baseline"),
    "chaos": (_chaos, "kill -9 each service and process during a steady run; exact counts per fault"),
    "report": (_report, "self-contained HTML indicator report for a period: --from --to --out [--city]"),
    "indicators": (_indicators, "the city's indicators for a period against the plan's targets"),
    "import": (_import, "scale-house history (CSV/Excel) into the pipeline: FILE --mapping MAP.yaml"),
    "dashboards": (_dashboards, "Grafana dashboards as code: generate | push --url --token"),
    "services": (_services, "local Mosquitto, Kafka, InfluxDB: up | down | status | reset"),
    "schema": (_schema, "print the JSON Schema of the message contract (for device vendors)"),
}


def _version() -> str:
    """The installed distribution's version (pyproject.toml), as operators expect of a service."""
    try:
        return importlib.metadata.version("wastestream")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wastestream", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, add_help=name == "schema")
        if name == "schema":
            p.add_argument("--out", help="write to this file instead of stdout")
    args, rest = parser.parse_known_args(argv)
    if args.command == "edge" and rest[:1] == ["run"]:
        rest = rest[1:]
    handler, _ = COMMANDS[args.command]
    return handler(args, rest)


if __name__ == "__main__":
    sys.exit(main())
