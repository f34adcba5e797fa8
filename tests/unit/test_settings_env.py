"""Every WS_* variable the code uses is read in one place (Settings) and documented in one table."""

import re
from pathlib import Path

from wastestream.foundation.settings import REPO_ROOT

PACKAGES = ("contract", "edge", "stream", "firmware_sim", "dashboards", "wastestream")
SETTINGS = REPO_ROOT / "wastestream" / "foundation" / "settings.py"
NAME = re.compile(r"\bWS_[A-Z0-9_]*[A-Z0-9]\b")
READ = re.compile(r"""(environ\.get\(|environ\[|getenv\()\s*["'](WS_[A-Z0-9_]+)""")
ROW = re.compile(r"^\|([^|]*)\|", re.MULTILINE)


def _sources() -> list[Path]:
    return [p for d in PACKAGES for p in sorted((REPO_ROOT / d).rglob("*.py"))]


def table_names(markdown: Path) -> set[str]:
    """WS_ names in the first column of the file's tables."""
    return {n for cell in ROW.findall(markdown.read_text(encoding="utf-8")) for n in NAME.findall(cell)}


def settings_names() -> set[str]:
    return set(re.findall(r'_env\("(WS_[A-Z0-9_]+)"', SETTINGS.read_text(encoding="utf-8")))


def test_no_ws_variable_is_read_outside_settings() -> None:
    reads = [f"{p.relative_to(REPO_ROOT)}: {m.group(2)}" for p in _sources() if p != SETTINGS
             for m in READ.finditer(p.read_text(encoding="utf-8"))]
    assert reads == []


def test_every_ws_name_in_the_code_is_a_setting_or_a_local_service_variable() -> None:
    """Names the code passes to deploy/local/services.sh (ports of private services) are that script's."""
    used = {n for p in _sources() for n in NAME.findall(p.read_text(encoding="utf-8"))}
    service_scripts = table_names(REPO_ROOT / "deploy" / "local" / "README.md")
    assert sorted(used - settings_names() - service_scripts) == []


def test_every_setting_is_in_the_readme_table() -> None:
    assert sorted(settings_names() - table_names(REPO_ROOT / "README.md")) == []
    assert sorted(table_names(REPO_ROOT / "README.md") - settings_names()) == []
