"""What an officer reads in a push is Chinese first, in Beijing time (issue 13, item 4): the kind
and severity in Chinese, the time as 北京时间, a Chinese sentence from the alert's fields, and the
stream's English summary second. The webhook stays machine-readable (UTC plus `ts_local`)."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

import pytest

from contract.events import WeighingFlag
from stream.agents.integrity import kind as weighbridge_kind
from stream.alerting.channels import dingtalk, webhook, wecom
from stream.alerting.kinds import kind_name
from stream.alerting.message import document, markdown, summary_zh, text
from stream.alertkinds import KINDS, REGISTRY
from tests.unit.test_alert_channels import ALERT, INJECTED

MISSING: dict[str, Any] = {
    **ALERT, "alert_id": "manifest_missing:00000000000000aa", "kind": "manifest_missing",
    "severity": "critical", "subject": "桂B54321", "site_id": "lz-liudong-site", "device_id": "wb-2",
    "raised_at": "2026-12-03T07:14:21.000Z", "lat": None, "lon": None,
    "summary": "桂B54321: load of 8000 kg from lz-liudong-site not delivered within 3600 s",
}
BASE = "https://zf.example.cn/alerts"


def officer_text(channel: str, alert: dict[str, Any]) -> str:
    """The text the officer's app shows, as each channel sends it."""
    if channel == "dingtalk":
        return str(dingtalk.payload(alert, BASE, [])["markdown"]["text"])
    if channel == "wecom":
        return str(wecom.payload(alert, BASE)["markdown"]["content"])
    body, _ = webhook.WebhookChannel("hook", "http://x", "whsec", BASE).request(alert, [], now=1)
    return str(json.loads(body)["text"])


@pytest.mark.parametrize("channel", ["dingtalk", "wecom", "webhook"])
def test_push_is_chinese_first_in_beijing_time(channel: str) -> None:
    shown = officer_text(channel, MISSING)
    assert "时间：2026-12-03 15:14:21（北京时间）" in shown
    assert "07:14" not in shown and "T07" not in shown  # no UTC left for an officer to convert
    assert "电子联单未到达" in shown and "级别：严重" in shown
    zh = shown.index("电子联单未闭合")  # the Chinese sentence built from the fields...
    en = shown.index("not delivered within 3600 s")  # ...and the stream's English summary after it
    assert zh < en
    english = next(line for line in shown.splitlines() if "not delivered" in line).replace("\\", "")
    assert "English：Manifest missing (critical): 桂B54321: load" in english


def test_beijing_date_rolls_over_at_utc_16() -> None:
    late = {**MISSING, "raised_at": "2026-12-03T20:30:00.000Z"}
    assert "时间：2026-12-04 04:30:00（北京时间）" in text(late)


def test_webhook_document_keeps_utc_and_adds_beijing_time() -> None:
    ch = webhook.WebhookChannel("hook", "http://x", "whsec", BASE)
    body, headers = ch.request(MISSING, ["m1"], now=1700000000)
    assert webhook.verify("whsec", "1700000000", body, headers["X-Wastestream-Signature"], now=1700000000)
    doc = json.loads(body)
    assert doc["raised_at"] == "2026-12-03T07:14:21.000Z"
    assert doc["ts_local"] == "2026-12-03T15:14:21.000+08:00"
    assert datetime.fromisoformat(doc["ts_local"]) == datetime.fromisoformat(doc["raised_at"])
    assert doc["title"] == "【严重】电子联单未到达：桂B54321" and doc["kind_name_en"] == "Manifest missing"
    assert doc["summary_zh"] == summary_zh(MISSING) and doc["summary"] == MISSING["summary"]


def test_a_kind_without_a_template_still_reads_as_a_chinese_sentence() -> None:
    new = {**MISSING, "kind": "scale_house_fire", "subject": "wb-9", "device_id": "wb-9"}
    line = summary_zh(new)
    assert line == "站点lz-liudong-site（设备wb-9）报告“scale_house_fire”，对象：wb-9。"
    assert f"概要：{line}".replace("_", "\\_") in markdown(new, BASE)  # escaped like every value
    assert "English：Scale house fire (critical)" in text(new)


def test_every_weighbridge_flag_has_a_chinese_name_and_a_template() -> None:
    for flag in WeighingFlag:
        code = weighbridge_kind(flag)
        assert kind_name(code) != code, f"{code}: not registered in stream/alertkinds.py"
        assert REGISTRY[code].template, f"{code}: no Chinese sentence"


def test_every_template_formats_and_names_a_known_kind() -> None:
    for entry in KINDS:
        code = entry.code
        line = summary_zh({**MISSING, "kind": code})
        assert "{" not in line and ("桂B54321" in line or "lz-liudong-site" in line), code


def test_values_are_not_reread_as_template_fields_or_lines() -> None:
    braces = {**MISSING, "subject": "{site}{0}"}
    assert "{site}{0}" in summary_zh(braces)
    shown = text(INJECTED)
    assert len(shown.splitlines()) == 10  # the title and nine fields: a value's newline adds none
    assert not any(line.startswith("###") for line in shown.splitlines())


def test_an_unreadable_time_is_shown_as_stored_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    odd = {**MISSING, "raised_at": "yesterday"}
    with caplog.at_level(logging.WARNING, logger="stream.alerting.message"):
        doc = document(odd, BASE, [])
    assert doc["ts_local"] is None and "时间：yesterday" in doc["text"]
    assert "not ISO 8601" in caplog.text
