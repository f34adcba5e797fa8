"""`wastestream dashboards generate | push`: the subcommands, imported lazily."""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str]) -> int:
    args = list(argv)
    action = args.pop(0) if args and args[0] in ("generate", "push") else "generate"
    if action == "push":
        from dashboards.push import main as push_main

        return push_main(args)
    from dashboards.generate import main as generate_main

    return generate_main(args)
