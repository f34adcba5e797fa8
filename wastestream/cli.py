"""`wastestream`: one console script, one subcommand per part of the pipeline.

Each subcommand imports its part lazily so that, say, `wastestream schema` on a
vendor's laptop does not pull in Faust, and an edge box with only `wastestream[edge]` runs
`wastestream edge run`; a command whose part is not installed says which extra to install
(`_EXTRA_OF`) instead of an ImportError traceback. Exit codes: wastestream/foundation/cliutil.py.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import subprocess
import sys
from collections.abc import Callable, Sequence

from wastestream.foundation import cliutil, logs
from wastestream.foundation.settings import REPO_ROOT

_EXTRA_OF = {
    "serial": "edge", "pymodbus": "edge", "h11": "edge",
    "aiokafka": "stream", "faust": "stream", "mode": "stream", "influxdb_client": "stream",
    "shapely": "stream", "orjson": "stream", "uvloop": "stream", "jinja2": "stream", "argon2": "stream",
    "aiohttp": "stream", "yarl": "stream",
    "grafana_client": "dashboards", "grafana_foundation_sdk": "dashboards", "niquests": "dashboards",
    "openpyxl": "import",
}
"""The extra (pyproject.toml) that installs a module a command may lack (tests/unit/test_cli_extras.py
checks it against the extras)."""


def _actions(prog: str, description: str, actions: dict[str, str], rest: list[str]) -> tuple[str, list[str]]:
    """A command's own actions (`edge run`, `dashboards push`, ...), listed in its --help; each
    action parses the rest itself (its own --help)."""
    parser = cliutil.parser(prog, description)
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, help_text in actions.items():
        sub.add_parser(name, help=help_text, add_help=False)
    args, more = parser.parse_known_args(rest)
    return args.action, more


def _schema(args: argparse.Namespace, rest: list[str]) -> int:
    from contract.jsonschema import contract_schema_json, kafka_record_schema_json

    if args.profile:  # a vendor device profile's schema (edge/devices/profiles/)
        from edge.devices.profiles import ProfileError, profile_schema_json

        try:
            text = profile_schema_json(args.profile) + "\n"
        except ProfileError as exc:
            print(f"wastestream schema: {exc}", file=sys.stderr)
            return cliutil.EXIT_USAGE
    else:
        text = (kafka_record_schema_json() if args.kafka_record else contract_schema_json()) + "\n"
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)
    return 0


def _sim(args: argparse.Namespace, rest: list[str]) -> int:
    from firmware_sim.city import main

    return main(rest)


_EDGE_ACTIONS = {"run": "run the agent of one site: --config site.yaml",
                 "probe": "an installer's probe of a device: --modbus | --serial | --jt808 (edge/probe/)"}


def _edge(args: argparse.Namespace, rest: list[str]) -> int:
    if rest[:1] and rest[0].startswith("--") and rest[0] != "--help":
        rest = ["run", *rest]  # the old `wastestream edge --config site.yaml`
    action, more = _actions("wastestream edge", "the edge agent of a site", _EDGE_ACTIONS, rest)
    if action == "probe":  # `edge probe --modbus|--serial|--jt808 ...`: edge/probe/, one module per mode
        from edge.probe import USAGE
        from edge.probe import main as probe

        if more in (["-h"], ["--help"]):
            print(f"{USAGE}\n\n{cliutil.EPILOG}")
            return cliutil.EXIT_OK
        return probe(more)
    from edge.agent import main

    return main(more) or 0


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


_SERVICES_ACTIONS = {"up": "start them (idempotent), installing what is missing",
                     "down": "stop them", "status": "which run, on which ports",
                     "reset": "stop them and delete their data (a fresh state)"}


def _services(args: argparse.Namespace, rest: list[str]) -> int:
    parser = cliutil.parser("wastestream services", "the local Mosquitto, Kafka and InfluxDB (deploy/local/)")
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, help_text in _SERVICES_ACTIONS.items():
        p = sub.add_parser(name, help=help_text, description=help_text, epilog=cliutil.EPILOG)
        p.add_argument("service", nargs="*", metavar="SERVICE",
                       help="mosquitto, kafka, influxdb (default: all)")
    parsed = parser.parse_args(rest)
    unknown = sorted(set(parsed.service) - {"mosquitto", "kafka", "influxdb"})
    if unknown:
        parser.error(f"unknown service {', '.join(unknown)}: mosquitto, kafka or influxdb")
    script = REPO_ROOT / "deploy" / "local" / "services.sh"
    return subprocess.call(["bash", str(script), parsed.action, *parsed.service])


COMMANDS: dict[str, tuple[Callable[[argparse.Namespace, list[str]], int], str]] = {
    "sim": (_sim, "run the simulated city: devices speaking their wire protocols on ptys"),
    "edge": (_edge, "the edge agent of a site: run --config site.yaml | probe (a device, for installers)"),
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


def _missing_extra(command: str, exc: ModuleNotFoundError) -> int | None:
    """The exit code and a one-line reason when `exc` is a library of an extra not installed."""
    module = (exc.name or "").split(".")[0]
    extra = _EXTRA_OF.get(module)
    if extra is None:
        return None
    print(f"wastestream {command}: this install lacks {module!r}, part of the {extra!r} extra; "
          f"install it with: pip install 'wastestream[{extra}]'", file=sys.stderr)
    return cliutil.EXIT_FAILURE


def main(argv: Sequence[str] | None = None) -> int:
    parser = cliutil.parser("wastestream", __doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, add_help=name == "schema", epilog=cliutil.EPILOG)
        if name == "schema":
            p.add_argument("--out", help="write to this file instead of stdout")
            p.add_argument("--kafka-record", action="store_true",
                           help="the Kafka record of the event topics instead (contract/kafka_record.py)")
            p.add_argument("--profile", metavar="KIND", help="a vendor device profile's schema instead "
                           "(KIND: sorting_station | truck_io; edge/devices/profiles/)")
    args, rest = parser.parse_known_args(argv)
    try:
        logs.configure("warning")  # a baseline; a command that takes --log-level sets its own
    except ValueError as exc:  # a bad WS_LOG_FORMAT
        print(f"wastestream: {exc}", file=sys.stderr)
        return cliutil.EXIT_USAGE
    handler, _ = COMMANDS[args.command]
    try:
        return handler(args, rest)
    except ModuleNotFoundError as exc:
        code = _missing_extra(args.command, exc)
        if code is None:
            raise
        return code
    except KeyboardInterrupt:
        return cliutil.EXIT_INTERRUPTED
    except BrokenPipeError:  # `wastestream ... | head`: the reader left; no traceback (Python docs, SIGPIPE)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return cliutil.EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
