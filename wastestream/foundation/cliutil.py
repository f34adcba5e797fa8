"""What every `wastestream` command line shares: the exit codes and the one `--log-level`.

Exit codes (documented in each parser's epilog and in the README, "Exit codes"):
0 done; 1 the command failed (a service unreachable, bad data, a part not installed);
2 usage or configuration error (argparse's own code, a bad config file); 130 stopped by Ctrl-C
before it finished (a service stopped by SIGINT/SIGTERM after a clean shutdown exits 0).
"""

from __future__ import annotations

import argparse

from wastestream.foundation.logs import LEVELS, level_name

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_CODES = {EXIT_OK: "done", EXIT_FAILURE: "failed (service unreachable, bad data, part not installed)",
              EXIT_USAGE: "usage or configuration error", EXIT_INTERRUPTED: "interrupted (Ctrl-C)"}
EPILOG = "exit codes: " + "; ".join(f"{code} {what}" for code, what in EXIT_CODES.items())


def parser(prog: str, description: str | None = None, **kwargs: object) -> argparse.ArgumentParser:
    """An ArgumentParser with the real program name and the exit codes as its epilog."""
    return argparse.ArgumentParser(prog=prog, description=description, epilog=EPILOG, **kwargs)  # type: ignore[arg-type]


def _level_arg(text: str) -> str:
    try:
        return level_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_log_level(parser: argparse.ArgumentParser, default: str = "info") -> None:
    """`--log-level LEVEL`, the one spelling of every command (`-l`, `--loglevel`: hidden aliases)."""
    parser.add_argument("--log-level", type=_level_arg, default=level_name(default), metavar="LEVEL",
                        help=f"one of {', '.join(sorted(set(LEVELS)))} (default {default}); "
                             "lines are text, or JSON with WS_LOG_FORMAT=json")
    parser.add_argument("-l", "--loglevel", dest="log_level", type=_level_arg, help=argparse.SUPPRESS)
