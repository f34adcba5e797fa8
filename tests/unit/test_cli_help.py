"""Every `wastestream` command's --help, found by walking the help itself (a new command is covered).

From `wastestream --help`, each command listed is asked for its --help, and so on down every
ACTION list (`edge run`, `dashboards push`, `alerts close`, `services up`, ...). Each must exit 0,
print its real program name in the usage line (`usage: wastestream edge run`, not `edge.agent`),
and end with the exit codes; the processes take the one `--log-level` spelling.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from wastestream.foundation.cliutil import EPILOG

REPO = Path(__file__).resolve().parents[2]
WASTESTREAM = str(Path(sys.executable).parent / "wastestream")
"""The console script, as users run it (Faust's click help names `python -m ...` otherwise)."""
PROCESSES = (("edge", "run"), ("bridge",), ("worker",), ("alerts", "serve"), ("sim",))
"""The long-running processes: each takes --log-level."""


def _help(path: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([WASTESTREAM, *path, "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def _listed(text: str) -> list[str]:
    """The names argparse lists under a COMMAND or ACTION positional (4-space indented)."""
    names, inside = [], False
    for line in text.splitlines():
        if re.fullmatch(r"  (COMMAND|ACTION)", line):
            inside = True
        elif inside and (m := re.match(r"    (\w[\w-]*)( |$)", line)):
            names.append(m.group(1))
        elif inside and line and not line.startswith("      "):
            inside = False
    return names


def _walk() -> dict[tuple[str, ...], subprocess.CompletedProcess[str]]:
    seen: dict[tuple[str, ...], subprocess.CompletedProcess[str]] = {}
    level: list[tuple[str, ...]] = [()]
    with ThreadPoolExecutor(4) as pool:
        while level:
            results = dict(zip(level, pool.map(_help, level), strict=True))
            seen.update(results)
            level = [(*path, name) for path, r in results.items() for name in _listed(r.stdout)]
    return seen


HELPS = _walk()


def test_the_walk_reaches_every_command_and_action() -> None:
    from wastestream.cli import COMMANDS

    walked = set(HELPS)
    assert {(name,) for name in COMMANDS} <= walked
    for nested in (("edge", "run"), ("edge", "probe"), ("dashboards", "generate"), ("dashboards", "push"),
                   ("alerts", "serve"), ("alerts", "close"), ("services", "up"), ("services", "reset")):
        assert nested in walked, f"{' '.join(nested)} is not listed in its parent's help"


def test_each_help_exits_0_with_its_real_name_and_the_exit_codes() -> None:
    for path, r in HELPS.items():
        name = " ".join(("wastestream", *path))
        assert r.returncode == 0, f"{name} --help: exit {r.returncode}\n{r.stderr}"
        first = r.stdout.lstrip().splitlines()[0]
        assert first.lower().startswith(f"usage: {name}".lower()), f"{name} --help: {first!r}"
        flat = " ".join(r.stdout.split())
        assert " ".join(EPILOG.split()) in flat, f"{name} --help does not list the exit codes"
        assert "Traceback" not in r.stderr, r.stderr


def test_processes_take_the_one_log_level_spelling() -> None:
    for path in PROCESSES:
        assert "--log-level" in HELPS[path].stdout, f"wastestream {' '.join(path)} lacks --log-level"


def test_the_old_bridge_spelling_still_parses() -> None:
    """`-l`/`--loglevel` (the bridge's before) stay as hidden aliases: old unit files keep working."""
    import argparse

    from wastestream.foundation.cliutil import add_log_level

    parser = argparse.ArgumentParser()
    add_log_level(parser)
    assert parser.parse_args(["-l", "warn"]).log_level == "WARNING"
    assert parser.parse_args(["--loglevel", "debug"]).log_level == "DEBUG"
    assert parser.parse_args(["--log-level", "crit"]).log_level == "CRITICAL"
    assert "--loglevel" not in parser.format_help()


def test_a_usage_error_exits_2_and_a_missing_action_says_so() -> None:
    for argv in (["edge"], ["services", "start"], ["dashboards", "nope"], ["bridge", "--no-such-flag"]):
        r = subprocess.run([WASTESTREAM, *argv], cwd=REPO,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2, (argv, r.returncode, r.stderr)
        assert "usage: wastestream" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_dashboards_generate_makes_its_out_dir(tmp_path: Path) -> None:
    out = tmp_path / "new" / "dir"
    r = subprocess.run([WASTESTREAM, "dashboards", "generate", "--out", str(out)],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.glob("ws-*.json")) == sorted(
        Path(line).name for line in r.stdout.split())
    assert list(out.glob("ws-*.json"))


def test_an_unreachable_service_is_exit_1_with_the_reason() -> None:
    """Kafka, InfluxDB or the alert API not answering: one line saying so, exit 1, no traceback."""
    cases = [(["topics", "--bootstrap", "127.0.0.1:1", "--timeout", "2"], {}, "could not ensure Kafka"),
             (["alerts", "list", "--url", "http://127.0.0.1:1"], {}, "cannot reach the alerts API"),
             (["indicators", "--from", "now-1d"], {"WS_INFLUX_URL": "http://127.0.0.1:1"}, "did not answer")]
    for argv, env, reason in cases:
        r = subprocess.run([WASTESTREAM, *argv], cwd=REPO, capture_output=True, text=True, timeout=120,
                           env={**os.environ, **env})
        assert r.returncode == 1, (argv, r.returncode, r.stderr)
        assert reason in r.stderr and "Traceback" not in r.stderr, r.stderr
