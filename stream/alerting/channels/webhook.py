"""Signed JSON webhook: the alert document, HMAC-SHA256-signed so receivers can trust it.

The document is for machines: `raised_at` in UTC, `ts_local` the same instant in Beijing time
with its +08:00 offset, and `title`/`text` in Chinese for a receiver that shows them.

Headers sent with each POST:
- `X-Wastestream-Timestamp`: Unix seconds when this attempt was signed.
- `X-Wastestream-Signature`: `sha256=` + hex(HMAC-SHA256(secret, f"{timestamp}." + raw body)).
- `X-Wastestream-Alert-Id`: the alert id (the receiver's idempotency key: a retry repeats it).

A receiver verifies (see `verify`): recompute the HMAC over the timestamp, a dot and the
raw body bytes exactly as received; compare in constant time; reject timestamps more than
5 minutes from its clock (a captured request cannot be replayed later); and treat a
repeated alert id as already handled (retries re-send it, signed anew).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from typing import Any

from stream.alerting.channels.base import JSON, Delivery, HttpPoster, dumps
from stream.alerting.message import document

SIGNATURE_HEADER = "X-Wastestream-Signature"
TIMESTAMP_HEADER = "X-Wastestream-Timestamp"
ALERT_ID_HEADER = "X-Wastestream-Alert-Id"
TOLERANCE_S = 300
_TIMESTAMP_RE = re.compile(r"[0-9]{1,12}")  # ASCII digits only: int() also takes " 1", "1_0", "١"
_SIGNATURE_RE = re.compile(r"sha256=[0-9a-f]{64}")


def signature(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str | None, body: bytes, header: str | None, *, now: float | None = None,
           tolerance_s: float = TOLERANCE_S) -> bool:
    """The receiver's check: a valid signature over a fresh timestamp. False, never an exception,
    for anything a sender controls (a missing header, non-digits, a huge number, non-hex, non-ASCII)."""
    if not isinstance(timestamp, str) or not _TIMESTAMP_RE.fullmatch(timestamp):
        return False
    if not isinstance(header, str) or not _SIGNATURE_RE.fullmatch(header):
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > tolerance_s:
        return False
    return hmac.compare_digest(signature(secret, timestamp, body).encode("ascii"), header.encode("ascii"))


class WebhookChannel:
    def __init__(self, name: str, url: str, secret: str, base_url: str, timeout_s: float = 10.0) -> None:
        self.name, self.url, self._secret, self._base_url = name, url, secret, base_url
        self._http = HttpPoster(timeout_s)

    def request(self, alert: dict[str, Any], evidence: list[str], now: float | None = None
                ) -> tuple[bytes, dict[str, str]]:
        body = dumps(document(alert, self._base_url, evidence))
        ts = str(int(time.time() if now is None else now))
        headers = {**JSON, TIMESTAMP_HEADER: ts, SIGNATURE_HEADER: signature(self._secret, ts, body),
                   ALERT_ID_HEADER: alert["alert_id"]}
        return body, headers

    async def send(self, alert: dict[str, Any], evidence: list[str]) -> Delivery:
        body, headers = self.request(alert, evidence)
        delivery, _ = await self._http.post(self.url, body, headers)
        return delivery

    async def close(self) -> None:
        await self._http.close()
