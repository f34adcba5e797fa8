"""Every command the README shows is run by a test, and everything it points at exists.

The commands are found in the README itself: each line of its ```sh blocks, and each inline code span
that starts with `make `, `.venv/bin/wastestream `, `wastestream ` or `pip install `. Each must
match one row of RUN_BY, which names the test that runs it (and how); the named test must exist.
`make` targets are also dry-run here (`make -n`): each must resolve to the command that test runs.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text(encoding="utf-8")

PARTS = "tests/integration/test_readme_commands.py::test_running_the_parts_yourself_as_written"
RUN_BY: list[tuple[str, str, str]] = [
    # (command pattern, test that runs it, how)
    (r"make demo( DURATION=\d+)?",
     "tests/integration/test_end_to_end.py::test_weighings_arrive_in_influxdb_exactly_once",
     "`make demo` is `wastestream demo` (dry-run below), whose run_city that test runs on the real services"),
    (r"make test", "tests/unit/test_setup.py::test_make_test_and_demo_install_the_packages_first",
     "`make test` is the whole suite (dry-run below: pytest after the install and the services)"),
    (r"make bench", "tests/unit/test_bench.py::test_result_file_schema_and_plot",
     "`make bench` is `wastestream bench` (dry-run below); its steps and summary are tested"),
    (r"make chaos", "tests/integration/test_chaos.py::test_kill_worker_bridge_edge_exact_counts",
     "`make chaos` is `wastestream chaos` (dry-run below), whose ChaosRun that test runs"),
    (r"make lint", "tests/unit/test_import_layers.py::",
     "`make lint` is ruff, mypy and lint-imports (dry-run below); test_import_layers runs lint-imports"),
    (r"make report-screenshot", "tests/integration/test_report.py::",
     "`make report-screenshot` is `wastestream report` then the screenshot module, which test_report runs"),
    (r"make services", PARTS, "dry-run there, and its `# or:` alternative for real"),
    (r"\.venv/bin/wastestream (services up|topics|worker|bridge|alerts|sim|edge run|report|import)\b.*",
     PARTS, "run as written, in order"),
    (r"export WS_ALERTS_TOKEN=.*", PARTS, "sets the environment of the lines after it"),
    (r"echo '[^']+' \| \.venv/bin/wastestream alerts users add .*", PARTS,
     "run as written; test_officer_pages signs in with accounts made the same way"),
    (r"wastestream schema", "tests/unit/test_readme_commands.py::test_wastestream_schema_runs", "run here"),
    (r"wastestream (dashboards generate|alerts).*", "tests/unit/test_cli_help.py::",
     "every command and action: --help; dashboards generate --out for real"),
    (r"pip install 'wastestream\[edge\]'", "tests/integration/test_edge_only_install.py::",
     "a fresh venv holding only that runs the edge agent"),
]
DRY_RUN = {"demo": ".venv/bin/wastestream demo --duration 60", "test": ".venv/bin/python -m pytest -ra",
           "bench": ".venv/bin/wastestream bench", "chaos": ".venv/bin/wastestream chaos",
           "lint": ".venv/bin/lint-imports", "services": "bash deploy/local/services.sh up",
           "report-screenshot": "python -m wastestream.report.screenshot"}


def readme_commands() -> list[str]:
    commands: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", README, re.S):
        for line in block.splitlines():
            code = line.partition("  #")[0].strip()
            if code and not code.startswith("#"):
                commands += [c.strip() for c in code.split(";") if c.strip()]
    for span in re.findall(r"`([^`\n]+)`", README):
        if re.match(r"(make |\.venv/bin/wastestream |wastestream |pip install )", span):
            commands.append(span.strip())
    return commands


def test_the_readme_starts_with_the_two_set_up_commands() -> None:
    first = re.search(r"```sh\n(.*?)```", README, re.S)
    assert first and README.index("```sh") < README.index("\n## ")
    lines = [line.split("#")[0].strip() for line in first.group(1).splitlines()]
    assert lines == ["make demo", "make test"]


def test_every_readme_command_is_run_by_a_named_test() -> None:
    commands = readme_commands()
    assert len(commands) > 15
    for command in commands:
        rows = [row for row in RUN_BY if re.fullmatch(row[0], command)]
        assert rows, f"README command {command!r} is run by no test (add a RUN_BY row naming the test)"
    for _, where, _ in RUN_BY:
        path, _, name = where.partition("::")
        text = (REPO / path).read_text(encoding="utf-8")
        assert not name or f"def {name}(" in text, f"{where} does not exist"


def test_make_targets_resolve_to_what_their_tests_run() -> None:
    for target, expected in DRY_RUN.items():
        r = subprocess.run(["make", "-n", target], cwd=REPO, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert expected in r.stdout, f"make -n {target}:\n{r.stdout}"


def test_wastestream_schema_runs() -> None:
    import json
    import sys

    r = subprocess.run([sys.executable, "-m", "wastestream.cli", "schema"], cwd=REPO, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)


TOP = {p.name for p in REPO.iterdir() if p.is_dir() and not p.name.startswith(".")}


def _paths(text: str) -> set[str]:
    """Repository paths a text points at: relative links, and code spans that are a path from the root
    (`stream/alerting/alerts.local.yaml`; a bare `agent.py` in a folder's row is relative to it)."""
    found = {m for m in re.findall(r"\]\(([^)#\s]+)\)", text) if "://" not in m}
    for span in re.findall(r"`([^`\n]+)`", text):
        for token in span.replace(",", " ").split():
            if re.fullmatch(r"[\w.-]+(/[\w.-]+)+/?", token) and token.split("/")[0] in TOP:
                found.add(token)
    return found


def test_the_readme_points_only_at_files_the_repository_holds() -> None:
    missing = sorted(p for p in _paths(README) if not (REPO / p).exists())
    assert not missing, f"README.md points at files the repository does not hold: {missing}"
    assert "DESIGN.md" not in README and "shared/" not in README


def test_city_files_cite_no_file_outside_the_repository() -> None:
    for path in sorted((REPO / "wastestream" / "foundation" / "cities").glob("*/*.yaml")):
        text = path.read_text(encoding="utf-8")
        for bad in ("shared/", "DESIGN.md", "/home/", "/Users/", "/work/", "/tmp/", "/root/", "C:\\"):
            assert bad not in text, f"{path.relative_to(REPO)} cites {bad!r}"
        for cited in re.findall(r"[\w/.-]+\.md\b", text):
            assert (path.parent / cited).exists() or (REPO / cited).exists(), f"{path.name} cites {cited}"
