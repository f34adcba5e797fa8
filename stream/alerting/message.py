"""What officers read: one alert rendered as Chinese text, Markdown, and a JSON document.

Chinese first, English second: the kind's Chinese name, severity in Chinese, the time in
Beijing time and a Chinese sentence built from the alert's structured fields (kind, subject,
site, device) by a per-kind template, then the stream's English summary as the second line.
The summary is free text from the agents; it is never machine-translated. Channels only wrap
these in their own envelope, so every channel says the same thing.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from stream.alerting.kinds import kind_english, kind_name, severity_name
from stream.alertkinds import REGISTRY

SCHEMA = "wastestream.alert.v1"

log = logging.getLogger(__name__)


def _beijing() -> tzinfo:
    """Asia/Shanghai; UTC+8 if the host has no tz database (China has kept UTC+8 since 1991)."""
    try:
        return ZoneInfo("Asia/Shanghai")
    except ZoneInfoNotFoundError:
        return timezone(timedelta(hours=8), "CST")


BEIJING = _beijing()

# The "what happened" sentence per kind is its registry entry's `template` (stream/alertkinds.py);
# a kind without an entry gets GENERIC, so it still reads as a sentence.
GENERIC = "站点{site}（设备{device}）报告“{kind_name}”，对象：{subject}"


_MARKUP = re.compile(r"[\\`*_{}\[\]()#+!|<>~&]|:(?=//)|(?<=www)\.", re.IGNORECASE)
_BREAKS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def plain(value: object) -> str:
    """`value` on one line: a line break in a value could fake another field on a terminal."""
    return _BREAKS.sub(" ", str(value))


def md(value: object) -> str:
    """`value` as literal Markdown text: every character that could open a link, an image, an
    autolink, HTML (DingTalk renders `<font>`), emphasis, code or a table is backslash-escaped, so
    is the `:` of `://` and the `.` of `www.` (bare-URL autolinks), and line breaks become spaces
    (a new line could start a heading or a list). A plate `[x](http://e.cn)` then reads as itself
    in the robot's message and links nowhere. The contract already refuses such plates and any
    control character; this holds for whatever text reaches an alert (summaries, older rows)."""
    return _MARKUP.sub(lambda m: "\\" + m.group(), plain(value))


def link(base_url: str, alert_id: str) -> str:
    return base_url if not base_url else base_url.rstrip("/") + "/" + alert_id


def alert_url(alert: dict[str, Any], base_url: str) -> str:
    """The signed link to the alert's page the pusher put in (`link`), else `base_url` + id."""
    return str(alert.get("link") or link(base_url, alert["alert_id"]))


ESCALATED = "【超时未签收·已升级】"


def title(alert: dict[str, Any]) -> str:
    head = ESCALATED if alert.get("escalated") else ""
    return f"{head}【{severity_name(alert['severity'])}】{kind_name(alert['kind'])}：{alert['subject']}"


def _instant(raised_at: object) -> datetime | None:
    """The stored UTC time (`2026-12-03T07:14:21.000Z`) as an aware datetime; None, logged, if
    it is not ISO 8601 (an older or hand-made row): the push still goes out, with the raw text."""
    try:
        when = datetime.fromisoformat(str(raised_at))
    except ValueError:
        log.warning("alert time %r is not ISO 8601: shown as stored, not in Beijing time", raised_at)
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


def beijing_time(raised_at: object) -> str:
    """`2026-12-03 15:14:21（北京时间）` for officers; the stored text if it cannot be read."""
    when = _instant(raised_at)
    return str(raised_at) if when is None else f"{when.astimezone(BEIJING):%Y-%m-%d %H:%M:%S}（北京时间）"


def local_iso(raised_at: object) -> str | None:
    """ISO 8601 in Beijing time with its offset (`2026-12-03T15:14:21.000+08:00`), for machines."""
    when = _instant(raised_at)
    return None if when is None else when.astimezone(BEIJING).isoformat(timespec="milliseconds")


def summary_zh(alert: dict[str, Any]) -> str:
    """The Chinese sentence from the kind's template (GENERIC for a kind without one)."""
    fields = {"subject": alert["subject"], "site": alert["site_id"], "device": alert["device_id"],
              "kind_name": kind_name(alert["kind"])}
    known = REGISTRY.get(alert["kind"])
    return (GENERIC if known is None else known.template).format(**fields) + "。"


def _location(alert: dict[str, Any]) -> str:
    if alert.get("lat") is None or alert.get("lon") is None:
        return "无"
    return f"{alert['lat']:.6f}, {alert['lon']:.6f}"


def _english(alert: dict[str, Any]) -> str:
    return f"{kind_english(alert['kind'])} ({alert['severity']}): {alert['summary']}"


def _fields(alert: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) in reading order: Chinese first, the English line second to last."""
    return [
        ("类型", f"{kind_name(alert['kind'])}（{alert['kind']}）"),
        ("级别", severity_name(alert["severity"])),
        ("对象", alert["subject"]),
        ("站点", f"{alert['site_id']}　设备：{alert['device_id']}"),
        ("时间", beijing_time(alert["raised_at"])),
        ("位置", _location(alert)),
        ("概要", summary_zh(alert)),
        ("English", _english(alert)),
        ("编号", alert["alert_id"]),
    ]


def text(alert: dict[str, Any]) -> str:
    """Plain text for a terminal's screen (the MQTT document's `text`): one line per field."""
    return "\n".join([plain(title(alert)), *(f"{label}：{plain(value)}" for label, value in _fields(alert))])


def markdown(alert: dict[str, Any], base_url: str) -> str:
    """Markdown for the IM robots (DingTalk and WeCom both render this subset); every value is `md()`."""
    lines = [f"### {md(title(alert))}", *(f"- {label}：{md(value)}" for label, value in _fields(alert))]
    url = alert_url(alert, base_url)
    if url:
        lines.append(f"\n[查看详情并处置]({url})")
    return "\n".join(lines)


def document(alert: dict[str, Any], base_url: str, evidence: list[str]) -> dict[str, Any]:
    """The JSON body of the webhook and the MQTT message (stable field names: a public format).
    `raised_at` stays UTC; `ts_local` is the same instant in Beijing time with its offset."""
    return {
        "schema": SCHEMA,
        "alert_id": alert["alert_id"],
        "kind": alert["kind"],
        "kind_name": kind_name(alert["kind"]),
        "kind_name_en": kind_english(alert["kind"]),
        "severity": alert["severity"],
        "severity_name": severity_name(alert["severity"]),
        "state": alert["state"],
        "site_id": alert["site_id"],
        "device_id": alert["device_id"],
        "subject": alert["subject"],
        "summary": alert["summary"],
        "summary_zh": summary_zh(alert),
        "raised_at": alert["raised_at"],
        "ts_local": local_iso(alert["raised_at"]),
        "lat": alert.get("lat"),
        "lon": alert.get("lon"),
        "count": alert.get("count", 1),
        "evidence": evidence,
        "title": title(alert),
        "text": text(alert),
        "url": alert_url(alert, base_url),
        "escalated": bool(alert.get("escalated")),
    }
