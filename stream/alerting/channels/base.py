"""The channel interface and the shared HTTP POST: every push channel returns a `Delivery`.

A channel never raises for a failed push: it reports what happened (HTTP code, error, and
whether retrying can help), and the pusher records it and decides about the next attempt.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import yarl


@dataclass(frozen=True)
class Delivery:
    ok: bool
    http_code: int | None = None
    error: str = ""
    retryable: bool = True
    """False for failures another attempt cannot fix (bad signature, 4xx, config errors)."""


class Channel(Protocol):
    name: str

    async def send(self, alert: dict[str, Any], evidence: list[str]) -> Delivery: ...
    async def close(self) -> None: ...


def retryable_status(status: int) -> bool:
    return status >= 500 or status in (408, 425, 429)


class HttpPoster:
    """One aiohttp session per channel; `post` classifies the outcome instead of raising."""

    def __init__(self, timeout_s: float) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def post(self, url: str | yarl.URL, body: bytes, headers: dict[str, str]) -> tuple[Delivery, Any]:
        """(outcome by HTTP status, parsed JSON body or None)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.post(url, data=body, headers=headers) as r:
                text = await r.text(errors="replace")
                status = r.status
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return Delivery(False, None, f"{type(exc).__name__}: {exc}"[:500]), None
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = None
        if 200 <= status < 300:
            return Delivery(True, status), parsed
        error = f"HTTP {status}: {text.strip()[:300]}"
        return Delivery(False, status, error, retryable_status(status)), parsed

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def robot_result(delivery: Delivery, body: Any, retry_codes: set[int]) -> Delivery:
    """DingTalk and WeCom answer HTTP 200 with `{"errcode": n, "errmsg": ...}`; only 0 is success."""
    if not delivery.ok:
        return delivery
    if not isinstance(body, dict) or "errcode" not in body:
        return Delivery(False, delivery.http_code, f"unexpected robot response: {str(body)[:200]}")
    code = body.get("errcode")
    if code == 0:
        return delivery
    return Delivery(False, delivery.http_code, f"errcode {code}: {body.get('errmsg', '')}"[:300],
                    retryable=code in retry_codes)


JSON = {"Content-Type": "application/json; charset=utf-8"}


def dumps(doc: Any) -> bytes:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
