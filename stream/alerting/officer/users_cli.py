"""`wastestream alerts users add|disable|enable|reset|list`: the administrator's account tool.

It works on the alert store's SQLite file directly (on the service's host, as its user), because
an account is needed before anyone can sign in. A password is read from `--password-file` or
from standard input (one line), never from the command line, where `ps` and the shell history
would keep it.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from stream.alerting.officer.accounts import AccountError, AccountStore, Role
from stream.alerting.officer.sessions import SessionStore
from wastestream.foundation import cliutil
from wastestream.foundation.settings import load_settings


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    users = sub.add_parser("users", help="officer accounts: add, disable, enable, reset, list",
                           epilog=cliutil.EPILOG)
    users.add_argument("--db", help="SQLite path (default: the config's db_path, else "
                                    "$WS_RUN_DIR/alerts/alerts.db)")
    verbs = users.add_subparsers(dest="verb", required=True, metavar="VERB")
    add = verbs.add_parser("add", help="a new account", epilog=cliutil.EPILOG)
    add.add_argument("username")
    add.add_argument("--role", choices=[r.value for r in Role], default=Role.OFFICER.value)
    add.add_argument("--district", action="append", default=[],
                     help="a district id of the city rules (repeat for several); officers need one")
    add.add_argument("--name", default="", help="display name, e.g. 李伟")
    for verb in (add, verbs.add_parser("reset", help="a new password (ends the account's sessions)",
                                       epilog=cliutil.EPILOG)):
        if verb is not add:
            verb.add_argument("username")
        verb.add_argument("--password-file", help="file whose first line is the password (else stdin)")
    for name, text in (("disable", "refuse sign-in and end the account's sessions"),
                       ("enable", "allow sign-in again")):
        verbs.add_parser(name, help=text, epilog=cliutil.EPILOG).add_argument("username")
    verbs.add_parser("list", help="every account", epilog=cliutil.EPILOG)


def _password(args: argparse.Namespace) -> str:
    if args.password_file:
        lines = Path(args.password_file).read_text(encoding="utf-8").splitlines()
        if not lines:
            raise AccountError(f"{args.password_file} is empty")
        return lines[0]
    if sys.stdin.isatty():
        return getpass.getpass("password: ")
    return sys.stdin.readline().rstrip("\n")


def _db_path(args: argparse.Namespace) -> Path:
    if args.db:
        return Path(args.db)
    from stream.alerting.config import load_config
    from stream.alerting.service import default_db_path

    settings = load_settings()
    config = load_config(settings.alerts_config or None)
    return Path(config.db_path) if config.db_path else default_db_path(settings)


def run(args: argparse.Namespace) -> int:
    path = _db_path(args)
    accounts = AccountStore(path)
    sessions = SessionStore(path, accounts)
    try:
        if args.verb == "add":
            user = accounts.add(args.username, _password(args), role=args.role, districts=args.district,
                                display_name=args.name)
            scope = ", ".join(user.districts) or "all"
            print(f"added {user.username} ({user.role.value}; districts: {scope})")
        elif args.verb == "reset":
            accounts.reset_password(args.username, _password(args))
            print(f"{args.username}: password reset, {sessions.close_all(args.username)} session(s) ended")
        elif args.verb in ("disable", "enable"):
            accounts.set_disabled(args.username, args.verb == "disable")
            ended = sessions.close_all(args.username) if args.verb == "disable" else 0
            print(f"{args.username}: {args.verb}d" + (f", {ended} session(s) ended" if ended else ""))
        else:
            for u in accounts.all():
                state = "disabled" if u.disabled else "active"
                print(f"{u.username:<20} {u.role.value:<14} {state:<9} {','.join(u.districts) or '*':<24} "
                      f"{u.display_name}")
    except (AccountError, OSError) as exc:
        print(f"wastestream alerts users {args.verb}: {exc}", file=sys.stderr)
        return 1
    finally:
        sessions.close()
        accounts.close()
    return 0
