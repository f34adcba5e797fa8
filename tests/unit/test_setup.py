"""`make test` and `make demo` install every program the tests and services call (issue 11, finding 12).

A fresh machine ran 827 tests and failed one: `mosquitto_sub` (Debian's mosquitto-clients) was
never installed, and shellcheck's test was skipped. The set-up's list is WS_PROGRAMS in
deploy/local/lib.sh, installed by deploy/local/packages.sh before anything else. These tests read
the programs that the tests, services and deploy scripts call and fail when one is not on that
list (or not installed now), and when a test skips because a program is missing.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from wastestream.foundation.settings import REPO_ROOT

LIB = REPO_ROOT / "deploy" / "local" / "lib.sh"
PYTHON_DIRS = ["tests", "wastestream", "stream", "edge", "firmware_sim", "dashboards", "contract"]

# Part of every Debian system (essential packages, or bash itself): nothing to install.
BASE = {
    "sh", "bash", "env", "timeout", "flock", "setsid", "nohup", "sha256sum", "stat", "awk", "grep",
    "sed", "tr", "cut", "head", "tail", "id", "mktemp", "apt-get", "dpkg", "python3",
    "make",  # how one gets here: `make test`
}  # fmt: skip
# Called only when present, each with a fallback; or installed by the code that calls it.
OPTIONAL = {
    "sudo": "lib.sh apt_install: used when not root",
    "ss": "lib.sh port_owner: names who holds a port in an error message, if it can",
    "curl": "influxdb.sh health check, falls back to a TCP probe",
    "go": "only WS_INFLUX_IMPL=1.8 builds InfluxDB 1.8 (deploy/local/influxdb18.sh)",
    "py-spy": "bench --py-spy, optional",
    "chromium": "make report-screenshot: installed on demand by wastestream/report/screenshot.py",
    "chromium-browser": "the same, another name",
    "google-chrome": "the same, another name",
    "google-chrome-stable": "the same, another name",
    "fc-list": "the same (fontconfig comes with chromium)",
}

WHICH = re.compile(r"""shutil\.which\(\s*["']([\w.+-]+)["']""")
EXEC = re.compile(r"""(?:run|Popen|check_output|check_call|call)\(\s*\[\s*["']([\w.+-]+)["']""")
COMMAND_V = re.compile(r"command -v ([\w.+-]+)")
ENSURE = re.compile(r"ensure_programs \S+ \S+ ([\w .+-]+)$", re.M)
NAMES = re.compile(r"""CHROMIUM_NAMES\s*=\s*\(([^)]*)\)""")


def set_up_programs() -> dict[str, str]:
    """WS_PROGRAMS as {program: Debian package}, read by bash itself."""
    done = subprocess.run(
        ["bash", "-c", 'source "$1" && printf "%s\\n" "${WS_PROGRAMS[@]}"', "_", str(LIB)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return dict(line.split(":", 1) for line in done.stdout.split())


def called_programs() -> dict[str, set[str]]:
    """{program: files} of every program run by Python code or a deploy script in the repository."""
    found: dict[str, set[str]] = {}

    def add(name: str, path: Path) -> None:
        found.setdefault(name, set()).add(str(path.relative_to(REPO_ROOT)))

    for top in PYTHON_DIRS:
        for path in (REPO_ROOT / top).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            for rx in (WHICH, EXEC):
                for name in rx.findall(text):
                    add(name, path)
            for names in NAMES.findall(text):
                for name in re.findall(r"""["']([\w.+-]+)["']""", names):
                    add(name, path)
    for path in [*(REPO_ROOT / "deploy").rglob("*.sh"), REPO_ROOT / ".ci" / "run"]:
        text = path.read_text(encoding="utf-8")
        for name in COMMAND_V.findall(text):
            add(name, path)
        for names in ENSURE.findall(text):
            for name in names.split():
                add(name, path)
    # test_security runs the broker's compose health check (a mosquitto_sub command line).
    compose = yaml.safe_load((REPO_ROOT / "deploy" / "production" / "docker-compose.yml").read_text())
    health = compose["services"]["mosquitto"]["healthcheck"]["test"][1]
    add(health.split()[0], REPO_ROOT / "deploy" / "production" / "docker-compose.yml")
    return found


def test_every_program_called_is_installed_by_the_set_up() -> None:
    listed = set(set_up_programs())
    called = called_programs()
    missing = {
        name: sorted(files) for name, files in called.items() if name not in listed | BASE | set(OPTIONAL)
    }
    assert missing == {}, "add these to WS_PROGRAMS in deploy/local/lib.sh (program:package)"
    # The scan finds what it must: the programs of the failure on the fresh machine among them.
    assert {"mosquitto_sub", "shellcheck", "openssl", "mosquitto", "java", "mvn", "systemd-analyze"} <= set(
        called
    )


def test_every_listed_program_is_installed_here() -> None:
    """What `make test` ran before pytest (deploy/local/packages.sh) left each of them usable."""
    for program in set_up_programs():
        done = subprocess.run(
            ["bash", "-c", 'source "$1" && ws_have_program "$2"', "_", str(LIB), program],
            capture_output=True,
            timeout=60,
        )
        assert done.returncode == 0, (
            f"{program} is missing: run `make test` (or bash deploy/local/packages.sh)"
        )


def test_no_test_skips_because_a_program_is_missing() -> None:
    """A missing program fails its test: a skip hid the missing mosquitto_sub and shellcheck."""
    skips = re.compile(
        r"skipif\(\s*shutil\.which|shutil\.which\([^)]*\)\s+is\s+None[^\n]*\n[^\n]*pytest\.skip"
    )
    offenders = [
        str(path.relative_to(REPO_ROOT))
        for path in (REPO_ROOT / "tests").rglob("*.py")
        if skips.search(path.read_text(encoding="utf-8"))
        or re.search(r"pytest\.skip\([^)]*not installed", path.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def test_make_test_and_demo_install_the_packages_first() -> None:
    for target in ("test", "demo", "unit"):
        done = subprocess.run(
            ["make", "-n", "-W", "pyproject.toml", target],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO_ROOT,
        )
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        first_venv = next(i for i, ln in enumerate(lines) if "-m venv" in ln)
        assert lines.index("bash deploy/local/packages.sh") < first_venv, target


def test_ensure_programs_installs_only_what_is_missing(tmp_path: Path) -> None:
    """With a stand-in apt-get: a missing program's package is installed in one apt-get call, with
    one progress line; then nothing more is (sh, already there, never was)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "apt-calls"
    apt = bin_dir / "apt-get"
    # The stand-in "installs" shellcheck by creating it in bin/.
    tool = bin_dir / "ws-test-tool"  # the stand-in "installs" it
    apt.write_text(f'#!/bin/sh\necho "$@" >>{calls}\nprintf "#!/bin/sh\\n" >{tool}\nchmod +x {tool}\n')
    apt.chmod(0o755)
    script = (
        'source "$1"; WS_PROGRAMS=(ws-test-tool:ws-test-pkg sh:dash); ensure_programs t "$2" sh ws-test-tool'
    )
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "WS_RUN_DIR": str(tmp_path / "run"), "HOME": str(tmp_path)}
    run = ["bash", "-c", script, "_", str(LIB), str(tmp_path / "log")]
    first = subprocess.run([*run], capture_output=True, text=True, timeout=60, env=env)
    assert first.returncode == 0, first.stderr
    assert calls.read_text().split("\n")[0].endswith("install ws-test-pkg")
    assert first.stderr.count("\n") == 1 and "installing Debian package(s) ws-test-pkg" in first.stderr
    again = subprocess.run([*run], capture_output=True, text=True, timeout=60, env=env)
    assert again.returncode == 0 and again.stderr == ""
    assert len(calls.read_text().splitlines()) == 1


def test_the_readme_names_every_package_it_promises() -> None:
    """README's first section says what the two commands install: the same list."""
    first = (REPO_ROOT / "README.md").read_text(encoding="utf-8").split("\n## ", 1)[0]
    words = set(re.findall(r"[\w.+-]+", first))
    assert sorted(set(set_up_programs().values()) - words) == []
