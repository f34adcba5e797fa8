"""The chaos report's count of edge re-sends, read from the agents' own log lines."""

from __future__ import annotations

import logging
from pathlib import Path

from wastestream.chaos import edge_resends


def test_edge_resends_are_read_from_the_agents_log_lines(tmp_path: Path) -> None:
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")  # the CLI's format

    def line(level: int, name: str, msg: str) -> str:
        return fmt.format(logging.LogRecord(name, level, __file__, 1, msg, None, None)) + "\n"

    (tmp_path / "edge-c-food.log").write_text(
        line(logging.INFO, "edge.mqtt", "MQTT connected to 127.0.0.1:28830 (session present: True)")
        + line(logging.WARNING, "edge.mqtt", "re-sent 2 message(s) the pipeline did not confirm in time")
        + line(logging.WARNING, "edge.mqtt", "re-sent 1 message(s) the pipeline did not confirm in time"))
    (tmp_path / "edge-c-river.log").write_text(line(logging.INFO, "edge.agent", "running"))
    (tmp_path / "bridge-0.log").write_text(line(logging.WARNING, "edge.mqtt", "re-sent 9 message(s)"))
    found = edge_resends(tmp_path)
    assert list(found) == ["edge-c-food"]
    assert [n for _, n in found["edge-c-food"]] == [2, 1]
