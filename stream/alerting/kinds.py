"""Names of alert kinds and severities: what an enforcement officer reads on a phone.

The kinds' names come from the registry (stream/alertkinds.py). A kind not there (a row stored
by an older or newer version) still renders, with its code, so pushing never breaks.
"""

from __future__ import annotations

from stream.alertkinds import REGISTRY

SEVERITY_NAMES: dict[str, str] = {"info": "提示", "warning": "警告", "critical": "严重"}

SEVERITY_RANK: dict[str, int] = {"info": 0, "warning": 1, "critical": 2}


def kind_name(kind: str) -> str:
    """The Chinese name; the code itself for an unregistered kind."""
    known = REGISTRY.get(kind)
    return kind if known is None else known.name_zh


def kind_english(kind: str) -> str:
    """The English name; an unregistered kind's code read as English ("fire_alarm" -> "Fire alarm")."""
    known = REGISTRY.get(kind)
    return (kind.replace("_", " ").strip().capitalize() or kind) if known is None else known.name_en


def severity_name(severity: str) -> str:
    return SEVERITY_NAMES.get(severity, severity)
