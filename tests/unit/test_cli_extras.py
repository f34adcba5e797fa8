"""The extras: the edge's import graph stays out of them, and the CLI names the one a command lacks.

tests/integration/test_edge_only_install.py does it for real in a venv holding only
`wastestream[edge]`; these check the same things fast, in this venv.
"""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from wastestream.cli import _EXTRA_OF

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
EXTRAS: dict[str, list[str]] = PYPROJECT["project"]["optional-dependencies"]
NOT_ON_THE_EDGE = ("stream", "dashboards", "import")
EDGE_ENTRY_POINTS = ("edge.agent", "edge.probe", "wastestream.cli")
"""Not firmware_sim: pymodbus's simulator server imports aiohttp when it is there (optional for it)."""


def _dist(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0]


def _modules_of(dist: str) -> set[str]:
    """The top-level modules an installed distribution provides (this venv has every extra)."""
    return {m for m, dists in importlib.metadata.packages_distributions().items()
            if any(d.lower().replace("_", "-") == dist.lower().replace("_", "-") for d in dists)
            and not m.startswith("_")}


def test_every_library_of_an_extra_is_named_by_the_cli() -> None:
    """A stream-only command on an edge box must name its extra, whichever library is missing."""
    for extra in ("edge", *NOT_ON_THE_EDGE):
        for req in EXTRAS[extra]:
            dist = _dist(req)
            if dist == "wastestream":
                continue
            modules = _modules_of(dist)
            assert modules, f"{dist} (extra {extra}) is not installed in this venv"
            named = {m for m in modules if m in _EXTRA_OF}
            assert named, f"{dist} (extra {extra!r}): no module of it ({sorted(modules)}) in _EXTRA_OF"
            assert {_EXTRA_OF[m] for m in named} <= {extra, "stream"}, (dist, extra)


def test_the_edge_extra_holds_none_of_the_server_libraries() -> None:
    server = {_dist(r) for e in NOT_ON_THE_EDGE for r in EXTRAS[e]} - {"wastestream"}
    on_edge = {_dist(r) for r in (*PYPROJECT["project"]["dependencies"], *EXTRAS["edge"])}
    assert not server & on_edge
    assert {"faust-streaming", "aiokafka", "shapely", "influxdb-client", "grafana-client",
            "grafana-foundation-sdk", "openpyxl"} <= server


def test_the_edge_imports_no_server_library() -> None:
    """Importing the edge's entry points loads nothing that only the server extras install."""
    server_modules = sorted(m for m, extra in _EXTRA_OF.items() if extra in NOT_ON_THE_EDGE)
    code = ("import importlib, sys\n"
            f"for m in {EDGE_ENTRY_POINTS!r}: importlib.import_module(m)\n"
            f"print(sorted({{n.split('.')[0] for n in sys.modules}} & set({server_modules!r})))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", f"the edge imports {out.stdout.strip()}"


def test_a_command_without_its_extra_names_it(tmp_path: Path) -> None:
    """With the stream extra's libraries made unimportable, `wastestream worker` says what to install."""
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text(
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in {'faust', 'aiokafka', 'shapely', 'mode'}:\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Block())\n", encoding="utf-8")
    env = {"PYTHONPATH": f"{tmp_path}:{REPO}", "PATH": "/usr/bin:/bin"}
    for argv in (["worker"], ["bridge"], ["alerts", "serve"], ["report", "--from", "now-1d"]):
        r = subprocess.run([sys.executable, "-m", "wastestream.cli", *argv], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 1, (argv, r.returncode, r.stderr)
        assert "Traceback" not in r.stderr, r.stderr
        assert "pip install 'wastestream[stream]'" in r.stderr, r.stderr
    ok = subprocess.run([sys.executable, "-m", "wastestream.cli", "edge", "run", "--help"], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr  # the edge needs none of them
