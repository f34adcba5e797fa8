"""Signed, expiring links to one alert's page, carried by every push.

`{public_url}/o/l/{alert_id}?e={expiry}&s={signature}`: the signature is an HMAC-SHA256 over the
alert id and the expiry, so a link cannot be made for another alert or lengthened. A link only
says which alert to open: the officer still signs in, and district scoping still applies (a
forwarded link does not open another district's alert). The key comes from the config, or is
made once and kept in the store's file, so links survive a restart.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import sqlite3
import time
import urllib.parse
from pathlib import Path

SIG_CHARS = 43  # 256 bits in base64url


def stored_key(path: Path | str) -> bytes:
    """The link key kept in the alert store's file (made on first use)."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA busy_timeout=5000")
        db.execute("CREATE TABLE IF NOT EXISTS officer_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute("INSERT OR IGNORE INTO officer_meta VALUES ('link_key', ?)", (secrets.token_hex(32),))
        row = db.execute("SELECT value FROM officer_meta WHERE name = 'link_key'").fetchone()
        return bytes.fromhex(row[0])
    finally:
        db.close()


class LinkSigner:
    def __init__(self, key: bytes, public_url: str, ttl_s: float) -> None:
        if len(key) < 16:
            raise ValueError("a link key has at least 16 bytes")
        self._key, self.public_url, self.ttl_s = key, public_url.rstrip("/"), ttl_s

    def _sig(self, alert_id: str, expires: int) -> str:
        mac = hmac.new(self._key, f"{alert_id}\n{expires}".encode("utf-8", "surrogateescape"), hashlib.sha256)
        return base64.urlsafe_b64encode(mac.digest()).decode().rstrip("=")

    def link(self, alert_id: str, now: float | None = None) -> str:
        expires = int((time.time() if now is None else now) + self.ttl_s)
        query = urllib.parse.urlencode({"e": expires, "s": self._sig(alert_id, expires)})
        return f"{self.public_url}/o/l/{urllib.parse.quote(alert_id, safe=':')}?{query}"

    def check(self, alert_id: str, expires: str, sig: str, now: float | None = None) -> str | None:
        """None if the link is good; else why not (shown to the officer)."""
        if not expires.isascii() or not expires.isdigit() or len(expires) > 12 or len(sig) != SIG_CHARS:
            return "链接无效 (malformed link)"
        good = self._sig(alert_id, int(expires)).encode()
        if not hmac.compare_digest(good, sig.encode("utf-8", "replace")):
            return "链接无效 (bad signature)"
        if int(expires) < (time.time() if now is None else now):
            return "链接已过期 (link expired)"
        return None
