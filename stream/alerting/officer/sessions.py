"""Signed-in sessions, their CSRF tokens, and the sign-in rate limit.

A session is a random 256-bit token in an HttpOnly, SameSite=Lax cookie; the store keeps only its
SHA-256, so a copy of the database opens no session. Each session has its own CSRF token, sent in
every form and checked (constant time) on every state-changing request, together with the
request's Origin. Sessions end after `ttl_s`, on sign-out, or when the account is disabled or its
password reset. Failed sign-ins are counted per account and per client address over a window;
past the limit the sign-in is refused (HTTP 429) without checking the password.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from stream.alerting.officer.accounts import AccountStore, User

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY, username TEXT NOT NULL, csrf TEXT NOT NULL,
    created_ns INTEGER NOT NULL, expires_ns INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions(username);
CREATE TABLE IF NOT EXISTS login_failures (key TEXT NOT NULL, at_ns INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS login_failures_by_key ON login_failures(key, at_ns);
"""

COOKIE = "ws_session"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


@dataclass(frozen=True)
class Session:
    user: User
    csrf: str

    def csrf_ok(self, given: str) -> bool:
        return hmac.compare_digest(self.csrf.encode(), given.encode("utf-8", "surrogateescape"))


class SessionStore:
    def __init__(self, path: Path | str, accounts: AccountStore, *, ttl_s: float = 12 * 3600,
                 max_failures: int = 5, failure_window_s: float = 900.0) -> None:
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(SCHEMA)
        self.accounts, self.ttl_s = accounts, ttl_s
        self.max_failures, self.failure_window_s = max_failures, failure_window_s

    def close(self) -> None:
        self._db.close()

    def open(self, user: User) -> tuple[str, Session]:
        """A new session for `user`: (the cookie's token, the session)."""
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = time.time_ns()
        self._db.execute("INSERT INTO sessions VALUES (?, ?, ?, ?, ?)",
                         (_hash(token), user.username, csrf, now, now + int(self.ttl_s * 1e9)))
        self._db.execute("DELETE FROM sessions WHERE expires_ns < ?", (now,))
        return token, Session(user, csrf)

    def lookup(self, token: str | None) -> Session | None:
        """The live session of this cookie, or None (unknown, expired, or the account disabled)."""
        if not token or len(token) > 128:
            return None
        row = self._db.execute("SELECT * FROM sessions WHERE token_hash = ?", (_hash(token),)).fetchone()
        if row is None or row["expires_ns"] < time.time_ns():
            return None
        user = self.accounts.find(row["username"])
        if user is None or user.disabled:
            return None
        return Session(user, row["csrf"])

    def close_session(self, token: str | None) -> None:
        if token:
            self._db.execute("DELETE FROM sessions WHERE token_hash = ?", (_hash(token),))

    def close_all(self, username: str) -> int:
        """End every session of an account (password reset, account disabled)."""
        return self._db.execute("DELETE FROM sessions WHERE username = ?", (username,)).rowcount

    # --- sign-in rate limit -------------------------------------------------------------------

    def _failures(self, key: str, now_ns: int) -> int:
        since = now_ns - int(self.failure_window_s * 1e9)
        return int(self._db.execute("SELECT count(*) FROM login_failures WHERE key = ? AND at_ns >= ?",
                                    (key, since)).fetchone()[0])

    def limited(self, *keys: str) -> bool:
        """True if any of `keys` (account, client address) has `max_failures` recent failures."""
        now = time.time_ns()
        return any(self._failures(k, now) >= self.max_failures for k in keys)

    def record_failure(self, *keys: str) -> None:
        now = time.time_ns()
        self._db.executemany("INSERT INTO login_failures VALUES (?, ?)", [(k, now) for k in keys])
        self._db.execute("DELETE FROM login_failures WHERE at_ns < ?",
                         (now - int(self.failure_window_s * 1e9),))

    def clear_failures(self, key: str) -> None:
        self._db.execute("DELETE FROM login_failures WHERE key = ?", (key,))
