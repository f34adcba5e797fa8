"""Push formats and signatures: vectors computed independently with `openssl dgst -hmac`."""

from __future__ import annotations

import json
import re
import urllib.parse
from typing import Any

import pytest
from markdown_it import MarkdownIt

from stream.alerting.channels import build_channels, dingtalk, webhook, wecom
from stream.alerting.channels.base import Delivery, robot_result
from stream.alerting.channels.mqtt import topic_for
from stream.alerting.config import ConfigError, parse_config
from stream.alerting.message import document, markdown, title
from stream.alerting.points import alert_point, id_offset_ns
from stream.alerting.pusher import backoff_s
from stream.sinks.line_protocol import to_line

ALERT: dict[str, Any] = {
    "alert_id": "illegal_dumping:0123456789abcdef", "kind": "illegal_dumping", "severity": "critical",
    "state": "open", "site_id": "liuzhou-n", "device_id": "truck-07", "subject": "桂B12345",
    "summary": "bed raised outside every disposal site", "raised_at": "2025-03-01T08:00:00.000Z",
    "lat": 24.325, "lon": 109.415, "count": 1,
}


def test_dingtalk_sign_vector() -> None:
    # printf '1700000000000\nSEC0123456789abcdef' \
    #   | openssl dgst -sha256 -hmac SEC0123456789abcdef -binary | base64
    expected = "TSZbRFUuvaSQaRKUpF970OPCb2/LcQAP3wOvwZIzBZk="
    assert dingtalk.sign("SEC0123456789abcdef", 1700000000000) == expected


def test_dingtalk_signed_url_is_url_encoded_once() -> None:
    url = dingtalk.signed_url("https://oapi.dingtalk.com/robot/send?access_token=abc", "SEC0123456789abcdef",
                              1700000000000)
    assert url.startswith("https://oapi.dingtalk.com/robot/send?access_token=abc&timestamp=1700000000000&sign=")
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    assert query["sign"] == ["TSZbRFUuvaSQaRKUpF970OPCb2/LcQAP3wOvwZIzBZk="]
    assert "%2F" in url and "%3D" in url
    assert dingtalk.signed_url("https://x/send?access_token=a", None, 1) == "https://x/send?access_token=a"


def test_webhook_signature_vector_and_verify() -> None:
    # printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac whsec -hex
    expected = "sha256=8ad37ba156048ae0e0a5533c75cdf26fee88b07f93cb57ee4c80adb053012032"
    assert webhook.signature("whsec", "1700000000", b'{"a":1}') == expected
    assert webhook.verify("whsec", "1700000000", b'{"a":1}', expected, now=1700000100)
    assert not webhook.verify("whsec", "1700000000", b'{"a":2}', expected, now=1700000100)  # body changed
    assert not webhook.verify("other", "1700000000", b'{"a":1}', expected, now=1700000100)  # wrong secret
    assert not webhook.verify("whsec", "1700000000", b'{"a":1}', expected, now=1700000301)  # stale: replay
    assert not webhook.verify("whsec", "1700000001", b'{"a":1}', expected, now=1700000100)  # ts tampered


def test_webhook_request_is_signed_json_document() -> None:
    ch = webhook.WebhookChannel("hook", "http://x", "whsec", "https://zf.example.cn/alerts/")
    body, headers = ch.request(ALERT, ["m1", "m2"], now=1700000000)
    assert headers["X-Wastestream-Timestamp"] == "1700000000"
    assert webhook.verify("whsec", "1700000000", body, headers["X-Wastestream-Signature"], now=1700000000)
    doc = json.loads(body)
    assert doc["kind_name"] == "违规倾倒" and doc["evidence"] == ["m1", "m2"]
    assert doc["url"] == "https://zf.example.cn/alerts/illegal_dumping:0123456789abcdef"


def test_chinese_message_text() -> None:
    assert title(ALERT) == "【严重】违规倾倒：桂B12345"
    text = markdown(ALERT, "https://zf.example.cn/alerts")
    assert "违规倾倒" in text and "24.325000, 109.415000" in text
    assert "[查看详情并处置](https://zf.example.cn/alerts/illegal_dumping:0123456789abcdef)" in text
    assert "未密闭运输" in title({**ALERT, "kind": "uncovered_transport"})
    assert "new_kind" in title({**ALERT, "kind": "new_kind"})  # unknown kinds still render
    assert "位置：无" in markdown({**ALERT, "lat": None, "lon": None}, "")


def test_dingtalk_payload_format() -> None:
    p = dingtalk.payload(ALERT, "https://zf", ["13800000000"])
    assert p["msgtype"] == "markdown"
    assert set(p["markdown"]) == {"title", "text"}
    assert p["markdown"]["title"] == title(ALERT)
    assert p["markdown"]["text"].endswith("@13800000000")
    assert p["at"] == {"atMobiles": ["13800000000"], "isAtAll": False}


def test_wecom_payload_format_and_limit() -> None:
    p = wecom.payload(ALERT, "https://zf")
    assert p == {"msgtype": "markdown", "markdown": {"content": markdown(ALERT, "https://zf")}}
    long = wecom.payload({**ALERT, "summary": "很长" * 3000}, "https://zf")["markdown"]["content"]
    assert len(long.encode("utf-8")) <= wecom.MAX_CONTENT_BYTES
    assert long.startswith("[查看详情](https://zf/illegal_dumping:0123456789abcdef)")


def test_robot_errcode_handling() -> None:
    ok = Delivery(True, 200)
    assert robot_result(ok, {"errcode": 0, "errmsg": "ok"}, set()).ok
    bad = robot_result(ok, {"errcode": 310000, "errmsg": "sign not match"}, {130101})
    assert not bad.ok and not bad.retryable and "310000" in bad.error
    assert robot_result(ok, {"errcode": 130101, "errmsg": "send too fast"}, {130101}).retryable
    assert not robot_result(ok, "<html>", set()).ok


def test_mqtt_topic_template() -> None:
    assert topic_for("ws/v1/enforcement/alerts/{severity}", ALERT) == "ws/v1/enforcement/alerts/critical"
    assert topic_for("zf/{site}/{kind}", ALERT) == "zf/liuzhou-n/illegal_dumping"


def test_document_fields() -> None:
    doc = document(ALERT, "", [])
    assert doc["schema"] == "wastestream.alert.v1" and doc["url"] == "" and doc["severity_name"] == "严重"


def test_config_routes_secrets_and_errors(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    secret_file = tmp_path / "hook.secret"
    secret_file.write_text("s3cret\n")
    monkeypatch.setenv("WS_TEST_DING_URL", "https://oapi.dingtalk.com/robot/send?access_token=t")
    config = parse_config({
        "link_base_url": "https://zf/alerts/",
        "channels": [
            {"type": "webhook", "name": "hook", "url": "http://h", "secret": {"file": str(secret_file)}},
            {"type": "dingtalk", "name": "ding", "url_secret": {"env": "WS_TEST_DING_URL"},
             "kinds": ["illegal_dumping"], "min_severity": "warning"},
            {"type": "mqtt", "name": "term", "min_severity": "critical"},
        ],
    })
    assert config.routes("illegal_dumping", "critical") == ["hook", "ding", "term"]
    assert config.routes("illegal_dumping", "info") == ["hook"]
    assert config.routes("bin_full", "warning") == ["hook"]
    channels = build_channels(config)
    assert set(channels) == {"hook", "ding", "term"}
    assert channels["hook"]._secret == "s3cret"  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="unique"):
        parse_config({"channels": [{"type": "mqtt", "name": "a"}, {"type": "mqtt", "name": "a"}]})
    with pytest.raises(ConfigError):
        parse_config({"channels": [{"type": "pager", "name": "a"}]})
    with pytest.raises(ConfigError, match="secret is required"):
        build_channels(parse_config({"channels": [{"type": "webhook", "name": "h", "url": "http://h"}]}))
    monkeypatch.delenv("WS_TEST_DING_URL")
    with pytest.raises(ConfigError, match="WS_TEST_DING_URL"):
        build_channels(config)


def test_backoff_is_exponential_and_bounded() -> None:
    retry = parse_config({"retry": {"attempts": 5, "initial_s": 1, "max_s": 5}}).retry
    assert [backoff_s(retry, n) for n in (1, 2, 3, 4)] == [1, 2, 4, 5]


def test_alert_point_is_deterministic() -> None:
    event = {"id": 1, "action": "raise", "to_state": "open", "at_ns": 99, "alert_id": ALERT["alert_id"],
             "kind": "illegal_dumping", "severity": "critical", "site_id": "liuzhou-n", "subject": "桂B12345",
             "lat": 24.3, "lon": 109.4, "raised_ns": 1_700_000_000_000_000_000, "count": 2}
    line = to_line(alert_point(event))
    assert line.startswith("alert,kind=illegal_dumping,severity=critical,site=liuzhou-n,state=open ")
    assert line.endswith(f" {1_700_000_000_000_000_000 + id_offset_ns(ALERT['alert_id'])}")
    assert "count=2i" in line and 'alert_id="illegal_dumping:0123456789abcdef"' in line
    closed = to_line(alert_point({**event, "action": "close", "to_state": "closed"}))
    assert ",state=closed " in closed and closed.endswith(f" {99 + id_offset_ns(ALERT['alert_id'])}")


def test_example_config_loads() -> None:
    from pathlib import Path

    from stream.alerting.config import load_config

    config = load_config(Path(__file__).parents[2] / "stream" / "alerting" / "alerts.example.yaml")
    assert [c.name for c in config.channels] == ["city-platform", "zf-dingtalk", "zf-wecom", "supervisors",
                                                 "terminals"]
    assert config.routes("illegal_dumping", "critical") == ["city-platform", "zf-dingtalk", "zf-wecom",
                                                            "terminals"]
    # the supervisors' group gets escalations only (YAML reads a bare `on:` key as true: hence `when:`)
    assert config.escalation_routes("illegal_dumping", "critical") == ["supervisors"]
    assert config.escalation_routes("bin_full", "warning") == []
    assert config.officer.public_url == "https://zf.example.gov.cn" and config.officer.cookie_secure
    assert config.cooldown_by_kind["device_offline"] == 3600


INJECTED: dict[str, Any] = {
    **ALERT, "subject": "[x](http://e.cn)", "site_id": "liuzhou-n", "device_id": "truck-07",
    "summary": "![i](http://e.cn/a.png) <font color=red>已处置</font> **急** `x` www.e.cn "
               "<http://e.cn> &#91;y&#93;(http://e.cn)\n### 伪造的标题\n- 伪造的条目",
}
"""What a hostile device or an older stored row could put in front of an officer (issue 11, finding 9)."""


def rendered(text: str) -> str:
    """HTML as a CommonMark renderer (DingTalk's and WeCom's follow CommonMark's rules) shows it."""
    return MarkdownIt("commonmark").enable(["strikethrough", "table"]).render(text)


@pytest.mark.parametrize("robot", ["dingtalk", "wecom"])
def test_markdown_injection_shows_literally_and_links_nowhere(robot: str) -> None:
    base = "https://zf.example.cn/alerts"
    text = (dingtalk.payload(INJECTED, base, [])["markdown"]["text"] if robot == "dingtalk"
            else wecom.payload(INJECTED, base)["markdown"]["content"])
    html = rendered(text)
    own_link = f'<a href="{base}/illegal_dumping:0123456789abcdef">'
    assert re.findall(r"<a\b[^>]*>", html) == [own_link]  # only the link to the alert itself
    assert "<img" not in html and "<font" not in html and "<strong>" not in html and "<code>" not in html
    assert len(re.findall(r"<h\d>", html)) == 1 and "<li>- 伪造的条目" not in html
    assert "[x](http://e.cn)" in html  # the plate, as the officer reads it
    assert "&lt;font color=red&gt;已处置&lt;/font&gt;" in html and "**急**" in html
    assert text.count("](") == 1  # not even a renderer without escapes sees another [..](..)
    assert "http://" not in text.replace(f"]({base}", "")  # nor a bare URL to autolink


def test_markdown_keeps_ordinary_values_readable() -> None:
    html = rendered(markdown(ALERT, "https://zf.example.cn/alerts"))
    assert "对象：桂B12345" in html and "站点：liuzhou-n" in html and "违规倾倒（illegal_dumping）" in html
    assert "2025-03-01 16:00:00（北京时间）" in html and "24.325000, 109.415000" in html
