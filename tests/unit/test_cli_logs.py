"""foundation/logs.py: the readable default, JSON lines on request, and where site/device/msg_id come from."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading
from collections.abc import Iterator

import pytest

from wastestream.foundation import logs


@pytest.fixture
def capture() -> Iterator[tuple[io.StringIO, logging.Logger]]:
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    saved_process = dict(logs._process_fields)
    stream = io.StringIO()
    yield stream, logging.getLogger("ws.test")
    root.handlers[:], root.level = saved, level
    logs._process_fields.clear()
    logs._process_fields.update(saved_process)


def _json_lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_readable_by_default_with_the_fields_as_a_suffix(capture: tuple[io.StringIO, logging.Logger],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    stream, log = capture
    monkeypatch.delenv("WS_LOG_FORMAT", raising=False)
    logs.configure("info", stream=stream)
    log.info("stored %d", 3, extra=logs.fields(site="lz-1", device="wb-1"))
    line = stream.getvalue().strip()
    assert line.endswith("INFO ws.test: stored 3 [site=lz-1 device=wb-1]")
    assert not line.startswith("{")


def test_json_lines_with_fields_from_the_call_the_task_and_the_process(
        capture: tuple[io.StringIO, logging.Logger], monkeypatch: pytest.MonkeyPatch) -> None:
    stream, log = capture
    monkeypatch.setenv("WS_LOG_FORMAT", "json")
    logs.configure("debug", stream=stream)
    logs.bind_process(site="lz-1")

    async def device(name: str) -> None:
        logs.bind(device=name)  # this task's only
        await asyncio.sleep(0)
        log.info("reading")

    async def main() -> None:
        await asyncio.gather(device("wb-1"), device("wb-2"))
        log.warning("dup", extra=logs.fields(msg_id="wb-1:1:7"))

    asyncio.run(main())
    thread = threading.Thread(target=lambda: log.error("from a driver thread"))
    thread.start()
    thread.join()
    records = [r for r in _json_lines(stream) if r["logger"] == "ws.test"]  # not asyncio's own
    assert [(r["msg"], r.get("device"), r.get("msg_id")) for r in records] == [
        ("reading", "wb-1", None), ("reading", "wb-2", None), ("dup", None, "wb-1:1:7"),
        ("from a driver thread", None, None)]
    assert all(r["site"] == "lz-1" and r["logger"] == "ws.test" for r in records)
    assert records[-1]["level"] == "ERROR"


def test_a_message_cannot_forge_a_second_json_record(capture: tuple[io.StringIO, logging.Logger]) -> None:
    """A device id or payload with a newline stays inside its one record (one line, escaped)."""
    stream, log = capture
    logs.configure("info", fmt="json", stream=stream)
    log.warning("bad id %s", 'x\n{"level": "INFO", "msg": "forged"}', extra=logs.fields(device="d\nx"))
    try:
        raise ValueError("boom\nline two")
    except ValueError:
        log.exception("failed")
    records = _json_lines(stream)
    assert len(records) == 2
    assert "forged" in str(records[0]["msg"]) and records[0]["device"] == "d\nx"
    assert "ValueError: boom" in str(records[1]["exc"])


def test_topic_fields_only_for_device_topics() -> None:
    assert logs.topic_fields("ws/v1/lz-1/weighbridge/wb-1/weighing") == {"site": "lz-1", "device": "wb-1"}
    assert logs.topic_fields("ws/ack/v1/lz-1") == {}
    assert logs.topic_fields("x/y") == {}


def test_a_bad_format_or_level_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="text, json"):
        logs.make_formatter("xml")
    with pytest.raises(ValueError, match="unknown log level"):
        logs.level_name("loud")
    assert logs.level_name("WARN") == "WARNING" and logs.level_name("crit") == "CRITICAL"


def test_fausts_handler_writes_our_json(capture: tuple[io.StringIO, logging.Logger],
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """The worker's logging: mode's own set-up (its handler writes to stderr), merged with ours."""
    from mode.utils.logging import setup_logging

    _, log = capture
    setup_logging(loglevel="INFO", logging_config=logs.mode_logging_config("json"))
    log.info("from faust's handler", extra=logs.fields(msg_id="m-1"))
    records = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert records[-1]["msg"] == "from faust's handler" and records[-1]["msg_id"] == "m-1"
