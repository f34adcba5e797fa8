"""What officers read: one alert rendered as Chinese text, Markdown, and a JSON document.

Channels only wrap these in their own envelope, so every channel says the same thing.
"""

from __future__ import annotations

import re
from typing import Any

from stream.alerting.kinds import kind_name, severity_name

SCHEMA = "wastestream.alert.v1"


_MARKUP = re.compile(r"[\\`*_{}\[\]()#+!|<>~&]|:(?=//)|(?<=www)\.", re.IGNORECASE)
_BREAKS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def md(value: object) -> str:
    """`value` as literal Markdown text: every character that could open a link, an image, an
    autolink, HTML (DingTalk renders `<font>`), emphasis, code or a table is backslash-escaped, so
    is the `:` of `://` and the `.` of `www.` (bare-URL autolinks), and line breaks become spaces
    (a new line could start a heading or a list). A plate `[x](http://e.cn)` then reads as itself
    in the robot's message and links nowhere. The contract already refuses such plates and any
    control character; this holds for whatever text reaches an alert (summaries, older rows)."""
    text = _BREAKS.sub(" ", str(value))
    return _MARKUP.sub(lambda m: "\\" + m.group(), text)


def link(base_url: str, alert_id: str) -> str:
    return base_url if not base_url else base_url.rstrip("/") + "/" + alert_id


def title(alert: dict[str, Any]) -> str:
    return f"【{severity_name(alert['severity'])}】{kind_name(alert['kind'])}：{alert['subject']}"


def _location(alert: dict[str, Any]) -> str:
    if alert.get("lat") is None or alert.get("lon") is None:
        return "无"
    return f"{alert['lat']:.6f}, {alert['lon']:.6f}"


def markdown(alert: dict[str, Any], base_url: str) -> str:
    """Markdown for the IM robots (DingTalk and WeCom both render this subset); every value is `md()`."""
    lines = [
        f"### {md(title(alert))}",
        f"- 类型：{md(kind_name(alert['kind']))}（{md(alert['kind'])}）",
        f"- 级别：{md(severity_name(alert['severity']))}",
        f"- 对象：{md(alert['subject'])}",
        f"- 站点：{md(alert['site_id'])}　设备：{md(alert['device_id'])}",
        f"- 时间：{md(alert['raised_at'])}",
        f"- 位置：{md(_location(alert))}",
        f"- 概要：{md(alert['summary'])}",
        f"- 编号：{md(alert['alert_id'])}",
    ]
    url = link(base_url, alert["alert_id"])
    if url:
        lines.append(f"\n[查看详情并处置]({url})")
    return "\n".join(lines)


def document(alert: dict[str, Any], base_url: str, evidence: list[str]) -> dict[str, Any]:
    """The JSON body of the webhook and the MQTT message (stable field names: a public format)."""
    return {
        "schema": SCHEMA,
        "alert_id": alert["alert_id"],
        "kind": alert["kind"],
        "kind_name": kind_name(alert["kind"]),
        "severity": alert["severity"],
        "severity_name": severity_name(alert["severity"]),
        "state": alert["state"],
        "site_id": alert["site_id"],
        "device_id": alert["device_id"],
        "subject": alert["subject"],
        "summary": alert["summary"],
        "raised_at": alert["raised_at"],
        "lat": alert.get("lat"),
        "lon": alert.get("lon"),
        "count": alert.get("count", 1),
        "evidence": evidence,
        "title": title(alert),
        "url": link(base_url, alert["alert_id"]),
    }
