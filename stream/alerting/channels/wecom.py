"""WeCom (企业微信) group robot: `{"msgtype": "markdown", "markdown": {"content": ...}}`.

The robot's URL (`.../cgi-bin/webhook/send?key=...`) is the only credential, so it comes from
a secret. Content is limited to 4096 bytes of UTF-8; longer text is cut (the link to the
alert is kept: it is placed first if the text must be cut). errcode 45009 (rate limit,
20 messages/minute) is retried.
"""

from __future__ import annotations

from typing import Any

from stream.alerting.channels.base import JSON, Delivery, HttpPoster, dumps, robot_result
from stream.alerting.message import alert_url, markdown

MAX_CONTENT_BYTES = 4096
RETRY_ERRCODES = {45009, -1}


def content(alert: dict[str, Any], base_url: str) -> str:
    text = markdown(alert, base_url)
    if len(text.encode("utf-8")) <= MAX_CONTENT_BYTES:
        return text
    url = alert_url(alert, base_url)
    head = f"[查看详情]({url})\n" if url else ""
    room = MAX_CONTENT_BYTES - len(head.encode("utf-8")) - 3
    return head + text.encode("utf-8")[:room].decode("utf-8", errors="ignore") + "..."


def payload(alert: dict[str, Any], base_url: str) -> dict[str, Any]:
    return {"msgtype": "markdown", "markdown": {"content": content(alert, base_url)}}


class WeComChannel:
    def __init__(self, name: str, url: str, base_url: str, timeout_s: float = 10.0) -> None:
        self.name, self._url, self._base_url = name, url, base_url
        self._http = HttpPoster(timeout_s)

    async def send(self, alert: dict[str, Any], evidence: list[str]) -> Delivery:
        delivery, body = await self._http.post(self._url, dumps(payload(alert, self._base_url)), JSON)
        return robot_result(delivery, body, RETRY_ERRCODES)

    async def close(self) -> None:
        await self._http.close()
