"""`wastestream dashboards generate | push`: the actions, listed in its help, imported lazily."""

from __future__ import annotations

from collections.abc import Sequence

from wastestream.foundation import cliutil

ACTIONS = {"generate": "write the dashboards' Grafana JSON (default: dashboards/ws-*.json)",
           "push": "upload the JSON to a Grafana: --url --token"}


def main(argv: Sequence[str]) -> int:
    args = list(argv)
    if not args or (args[0].startswith("-") and args[0] not in ("-h", "--help")):
        args.insert(0, "generate")  # `wastestream dashboards [--out DIR]`: generate, as before
    parser = cliutil.parser("wastestream dashboards", "Grafana dashboards as code")
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, help_text in ACTIONS.items():
        sub.add_parser(name, help=help_text, add_help=False)  # each action parses its own options
    parsed, rest = parser.parse_known_args(args)
    if parsed.action == "push":
        from dashboards.push import main as push_main

        return push_main(rest)
    from dashboards.generate import main as generate_main

    return generate_main(rest)
