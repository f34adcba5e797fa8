"""DingTalk (钉钉) custom group robot: a Markdown message to the robot's signed webhook URL.

Body: `{"msgtype": "markdown", "markdown": {"title", "text"}, "at": {...}}`. With 加签 enabled
the URL carries `timestamp` (ms) and `sign` = urlencode(base64(HMAC-SHA256(key=secret,
msg=f"{timestamp}\\n{secret}"))); DingTalk rejects a timestamp more than an hour off.
(Algorithm as in DingTalk's custom-robot docs, cross-checked against several client
implementations.) DingTalk answers HTTP 200 with `errcode` 0 on success; 130101 means
"sending too fast" (20 messages/minute per robot) and is retried.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import urllib.parse
from typing import Any

import yarl

from stream.alerting.channels.base import JSON, Delivery, HttpPoster, dumps, robot_result
from stream.alerting.message import markdown, title

RETRY_ERRCODES = {130101, -1}  # too fast; system busy


def sign(secret: str, timestamp_ms: int) -> str:
    """base64(HMAC-SHA256(secret, "{timestamp}\\n{secret}")), not yet URL-encoded."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode("ascii")


def signed_url(url: str, secret: str | None, timestamp_ms: int) -> str:
    if not secret:
        return url
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}timestamp={timestamp_ms}&sign={urllib.parse.quote_plus(sign(secret, timestamp_ms))}"


def payload(alert: dict[str, Any], base_url: str, at_mobiles: list[str]) -> dict[str, Any]:
    text = markdown(alert, base_url)
    if at_mobiles:  # DingTalk only notifies @mobiles that also appear in the text
        text += "\n\n" + " ".join(f"@{m}" for m in at_mobiles)
    return {
        "msgtype": "markdown",
        "markdown": {"title": title(alert), "text": text},
        "at": {"atMobiles": at_mobiles, "isAtAll": False},
    }


class DingTalkChannel:
    def __init__(self, name: str, url: str, secret: str | None, base_url: str,
                 at_mobiles: list[str] | None = None, timeout_s: float = 10.0) -> None:
        self.name, self._url, self._secret, self._base_url = name, url, secret, base_url
        self._at = list(at_mobiles or [])
        self._http = HttpPoster(timeout_s)

    async def send(self, alert: dict[str, Any], evidence: list[str]) -> Delivery:
        url = yarl.URL(signed_url(self._url, self._secret, int(time.time() * 1000)), encoded=True)
        delivery, body = await self._http.post(url, dumps(payload(alert, self._base_url, self._at)), JSON)
        return robot_result(delivery, body, RETRY_ERRCODES)

    async def close(self) -> None:
        await self._http.close()
