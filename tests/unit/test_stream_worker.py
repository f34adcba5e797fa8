"""The Faust app module imports no agent: the agents import it, and the worker's entry point
(stream/worker.py) finds them with Faust's autodiscovery (issue 12, "What to reach" 3)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from stream.alerting.make import make_alert
from stream.app import AGENT_PACKAGES, app

AGENT_MODULES = {"stream.agents.tonnage", "stream.agents.sorting", "stream.agents.transport",
                 "stream.agents.manifest", "stream.agents.device_health"}


def test_the_app_module_imports_no_agent() -> None:
    probe = ("import sys, stream.app, stream.senders, stream.worker; "
             "print(sorted(m for m in sys.modules if m.startswith('stream.agents')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_autodiscovery_registers_every_agent_module() -> None:
    assert AGENT_PACKAGES == ["stream.agents"]
    app.discover()
    found = {agent.fun.__module__ for agent in app.agents.values()}
    assert found == AGENT_MODULES


def test_an_agent_module_that_fails_to_import_fails_the_worker() -> None:
    with pytest.raises(RuntimeError, match=r"stream\.agents\.broken failed to import"):
        try:
            raise ValueError("bad rules")
        except ValueError:
            app._on_autodiscovery_error("stream.agents.broken")


def test_a_worker_records_what_it_raised_as_json_lines(tmp_path: Path) -> None:
    """What THIS worker raised is a file tests read (WS_RAISED_ALERTS_FILE), not a log line they grep."""
    from stream.senders import record_raised

    alerts = [make_alert("bin_full", site_id="s1", device_id="ss-1", subject=f"ss-1/{b}", summary="full",
                         evidence=["m1"], ts=datetime(2026, 12, 3, tzinfo=UTC), dedup_key=b)
              for b in ("kitchen", "residual")]
    path = tmp_path / "raised.jsonl"
    record_raised(alerts[:1], str(path))
    record_raised(alerts[1:], str(path))
    record_raised(alerts, "")  # off: nothing written anywhere
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert rows == [{"alert_id": a.alert_id, "kind": "bin_full", "subject": a.subject} for a in alerts]
