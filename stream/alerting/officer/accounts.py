"""Officer accounts: who may sign in, with which role, for which districts (区/县).

Passwords are stored as argon2id hashes (argon2-cffi, the OWASP-recommended scheme); a hash made
with older parameters is re-hashed at the next successful sign-in. The tables live in the alert
store's SQLite file (one file to back up), on their own connection.

Roles: an **officer** sees and acts on the alerts of their districts; a **supervisor** sees every
district's alerts, the supervisor page, and receives escalations; an **administrator** manages
accounts (`wastestream alerts users ...`) and sees everything.
"""

from __future__ import annotations

import enum
import json
import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    username TEXT PRIMARY KEY, display_name TEXT NOT NULL, role TEXT NOT NULL,
    districts TEXT NOT NULL, pw_hash TEXT NOT NULL, disabled INTEGER NOT NULL DEFAULT 0,
    created_ns INTEGER NOT NULL, updated_ns INTEGER NOT NULL
);
"""

USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,31}")
DISTRICT = re.compile(r"[a-z0-9][a-z0-9_-]{0,47}")
MIN_PASSWORD_CHARS, MAX_PASSWORD_CHARS = 10, 256
MAX_DISPLAY_CHARS = 64

_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash("not a password of anyone")
"""Verified against when the user is unknown, so a wrong name costs as long as a wrong password."""


class Role(enum.StrEnum):
    OFFICER = "officer"
    SUPERVISOR = "supervisor"
    ADMINISTRATOR = "administrator"


class AccountError(ValueError):
    """An account the store refuses to create or change; the message says why."""


@dataclass(frozen=True)
class User:
    username: str
    display_name: str
    role: Role
    districts: tuple[str, ...]
    disabled: bool

    @property
    def sees_all(self) -> bool:
        """Supervisors and administrators see every district's alerts."""
        return self.role is not Role.OFFICER

    def may_see(self, district: str) -> bool:
        return self.sees_all or (bool(district) and district in self.districts)


def _check_password(password: str) -> str:
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise AccountError(f"a password has {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters")
    return password


class AccountStore:
    def __init__(self, path: Path | str) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def add(self, username: str, password: str, *, role: Role | str = Role.OFFICER,
            districts: tuple[str, ...] | list[str] = (), display_name: str = "") -> User:
        if not USERNAME.fullmatch(username):
            raise AccountError("a username is 1-32 of a-z 0-9 . _ - (starting with a letter or digit)")
        try:
            role = Role(role)
        except ValueError:
            raise AccountError(f"role must be one of {', '.join(Role)}") from None
        for d in districts:
            if not DISTRICT.fullmatch(d):
                raise AccountError(f"district {d!r}: 1-48 of a-z 0-9 _ -")
        if role is Role.OFFICER and not districts:
            raise AccountError("an officer belongs to at least one district (--district)")
        display_name = display_name or username
        if len(display_name) > MAX_DISPLAY_CHARS or not display_name.isprintable():
            raise AccountError(f"a display name is at most {MAX_DISPLAY_CHARS} printable characters")
        pw_hash = _hasher.hash(_check_password(password))
        now = time.time_ns()
        try:
            self._db.execute("INSERT INTO users VALUES (?, ?, ?, ?, ?, 0, ?, ?)",
                             (username, display_name, role.value, json.dumps(sorted(set(districts))),
                              pw_hash, now, now))
        except sqlite3.IntegrityError:
            raise AccountError(f"user {username} exists") from None
        return self.get(username)

    def get(self, username: str) -> User:
        row = self._db.execute("SELECT * FROM users WHERE username = ?", (username,)).fetchone()
        if row is None:
            raise AccountError(f"no user {username}")
        return _user(row)

    def find(self, username: str) -> User | None:
        try:
            return self.get(username)
        except AccountError:
            return None

    def all(self) -> list[User]:
        return [_user(r) for r in self._db.execute("SELECT * FROM users ORDER BY username")]

    def of_role(self, role: Role) -> list[User]:
        return [u for u in self.all() if u.role is role and not u.disabled]

    def set_disabled(self, username: str, disabled: bool = True) -> User:
        cur = self._db.execute("UPDATE users SET disabled = ?, updated_ns = ? WHERE username = ?",
                               (int(disabled), time.time_ns(), username))
        if cur.rowcount == 0:
            raise AccountError(f"no user {username}")
        return self.get(username)

    def reset_password(self, username: str, password: str) -> User:
        pw_hash = _hasher.hash(_check_password(password))
        cur = self._db.execute("UPDATE users SET pw_hash = ?, updated_ns = ? WHERE username = ?",
                               (pw_hash, time.time_ns(), username))
        if cur.rowcount == 0:
            raise AccountError(f"no user {username}")
        return self.get(username)

    def authenticate(self, username: str, password: str) -> User | None:
        """The user if the password is theirs and the account is enabled; None otherwise (the
        caller says only "wrong name or password": which one is not told)."""
        row = self._db.execute("SELECT * FROM users WHERE username = ?", (username,)).fetchone()
        stored = row["pw_hash"] if row is not None else _DUMMY_HASH
        try:
            _hasher.verify(stored, password[:MAX_PASSWORD_CHARS + 1])
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        if row is None or row["disabled"]:
            return None
        if _hasher.check_needs_rehash(stored):
            self._db.execute("UPDATE users SET pw_hash = ? WHERE username = ?",
                             (_hasher.hash(password), username))
        return _user(row)


def _user(row: sqlite3.Row) -> User:
    return User(row["username"], row["display_name"], Role(row["role"]),
                tuple(json.loads(row["districts"])), bool(row["disabled"]))
