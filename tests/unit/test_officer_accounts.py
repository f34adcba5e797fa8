"""Officer accounts, sessions, the sign-in limit and signed links (stream/alerting/officer/)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from stream.alerting.officer.accounts import AccountError, AccountStore, Role
from stream.alerting.officer.links import LinkSigner, stored_key
from stream.alerting.officer.sessions import SessionStore

PASSWORD = "correct horse 42"


@pytest.fixture
def stores(tmp_path: Path) -> tuple[AccountStore, SessionStore]:
    accounts = AccountStore(tmp_path / "alerts.db")
    return accounts, SessionStore(tmp_path / "alerts.db", accounts, max_failures=3, failure_window_s=60)


def test_password_is_stored_as_argon2id_and_checked(stores: tuple[AccountStore, SessionStore],
                                                    tmp_path: Path) -> None:
    accounts, _ = stores
    accounts.add("li.wei", PASSWORD, districts=["yufeng"], display_name="李伟")
    raw = (tmp_path / "alerts.db").read_bytes()
    assert PASSWORD.encode() not in raw
    row = accounts._db.execute("SELECT pw_hash FROM users").fetchone()[0]
    assert row.startswith("$argon2id$")
    assert accounts.authenticate("li.wei", PASSWORD) is not None
    assert accounts.authenticate("li.wei", PASSWORD + "x") is None
    assert accounts.authenticate("nobody", PASSWORD) is None


def test_account_rules(stores: tuple[AccountStore, SessionStore]) -> None:
    accounts, _ = stores
    with pytest.raises(AccountError, match="district"):
        accounts.add("a1", PASSWORD, role=Role.OFFICER)  # an officer without a district
    with pytest.raises(AccountError, match="characters"):
        accounts.add("a2", "short", districts=["yufeng"])
    with pytest.raises(AccountError, match="username"):
        accounts.add("Robert'); DROP TABLE users;--", PASSWORD, districts=["yufeng"])
    with pytest.raises(AccountError, match="role"):
        accounts.add("a3", PASSWORD, role="root")
    accounts.add("boss", PASSWORD, role=Role.SUPERVISOR)
    with pytest.raises(AccountError, match="exists"):
        accounts.add("boss", PASSWORD, role=Role.SUPERVISOR)


def test_scoping_by_district(stores: tuple[AccountStore, SessionStore]) -> None:
    accounts, _ = stores
    officer = accounts.add("o1", PASSWORD, districts=["yufeng"])
    boss = accounts.add("s1", PASSWORD, role="supervisor")
    assert officer.may_see("yufeng") and not officer.may_see("liubei") and not officer.may_see("")
    assert boss.may_see("liubei") and boss.may_see("")


def test_disable_and_reset_end_sessions(stores: tuple[AccountStore, SessionStore]) -> None:
    accounts, sessions = stores
    user = accounts.add("o1", PASSWORD, districts=["yufeng"])
    token, session = sessions.open(user)
    assert sessions.lookup(token) == session
    accounts.set_disabled("o1")
    assert sessions.lookup(token) is None  # a disabled account's cookie opens nothing
    assert accounts.authenticate("o1", PASSWORD) is None
    accounts.set_disabled("o1", False)
    accounts.reset_password("o1", "a brand new secret")
    assert sessions.close_all("o1") == 1
    assert sessions.lookup(token) is None
    assert accounts.authenticate("o1", "a brand new secret") is not None


def test_session_token_is_stored_hashed_and_expires(tmp_path: Path) -> None:
    accounts = AccountStore(tmp_path / "a.db")
    sessions = SessionStore(tmp_path / "a.db", accounts, ttl_s=0.2)
    token, _ = sessions.open(accounts.add("o1", PASSWORD, districts=["x"]))
    stored = sessions._db.execute("SELECT token_hash FROM sessions").fetchone()[0]
    assert token not in stored
    assert sessions.lookup(token) is not None
    time.sleep(0.3)
    assert sessions.lookup(token) is None
    assert sessions.lookup("") is None and sessions.lookup("x" * 1000) is None


def test_csrf_is_per_session(stores: tuple[AccountStore, SessionStore]) -> None:
    accounts, sessions = stores
    user = accounts.add("o1", PASSWORD, districts=["x"])
    _, a = sessions.open(user)
    _, b = sessions.open(user)
    assert a.csrf != b.csrf
    assert a.csrf_ok(a.csrf) and not a.csrf_ok(b.csrf) and not a.csrf_ok("")


def test_sign_in_rate_limit(stores: tuple[AccountStore, SessionStore]) -> None:
    _, sessions = stores
    for _ in range(2):
        sessions.record_failure("user:o1", "ip:10.0.0.1")
    assert not sessions.limited("user:o1", "ip:10.0.0.1")
    sessions.record_failure("user:o1", "ip:10.0.0.1")
    assert sessions.limited("user:o1")  # the account, from any address
    assert sessions.limited("user:o2", "ip:10.0.0.1")  # any account, from that address
    assert not sessions.limited("user:o2", "ip:10.0.0.2")
    sessions.clear_failures("user:o1")
    assert not sessions.limited("user:o1")


def test_signed_links(tmp_path: Path) -> None:
    key = stored_key(tmp_path / "a.db")
    assert stored_key(tmp_path / "a.db") == key  # kept: links survive a restart
    signer = LinkSigner(key, "https://zf.example/", ttl_s=3600)
    link = signer.link("wb-1:5:17", now=1_000_000)
    assert link.startswith("https://zf.example/o/l/wb-1:5:17?e=1003600&s=")
    sig = link.rsplit("s=", 1)[1]
    assert signer.check("wb-1:5:17", "1003600", sig, now=1_000_100) is None
    assert "expired" in (signer.check("wb-1:5:17", "1003600", sig, now=1_003_601) or "")
    assert "signature" in (signer.check("wb-1:5:18", "1003600", sig, now=1_000_100) or "")  # another alert
    assert "signature" in (signer.check("wb-1:5:17", "9003600", sig, now=1_000_100) or "")  # lengthened
    assert "malformed" in (signer.check("wb-1:5:17", "１２", sig) or "")
    other = LinkSigner(stored_key(tmp_path / "b.db"), "https://zf.example/", ttl_s=3600)
    assert other.check("wb-1:5:17", "1003600", sig, now=1_000_100) is not None
