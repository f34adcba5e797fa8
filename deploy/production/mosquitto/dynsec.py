#!/usr/bin/env python3
"""Write the broker's dynamic-security config (accounts, password hashes, roles) from secret files.

    dynsec.py OUT.json < accounts      (one "kind<TAB>name<TAB>secret file" line per account)

Called by make-accounts.sh, which validates the names (accounts.sh) and says what each one is;
this file holds what each kind of account may do. Why the plugin and not acl_file: acl_file
grants every SUBSCRIBE and checks only delivery, so a site could join the bridges' share group
and make Mosquitto drop a share of every message (issue 11, finding 2); the plugin refuses the
SUBSCRIBE itself (SUBACK 135). It sees a shared subscription with its `$share/<group>/` prefix
(Mosquitto 2.0 handle_subscribe.c), hence the bridges' `$share/+/ws/v1/#` grant.

Standard library only: it runs on the Docker host next to init-secrets.sh.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import sys
import tempfile
from pathlib import Path
from typing import Any

# Mosquitto's own PBKDF2-SHA512 parameters (mosquitto_ctrl dynsec init, mosquitto_passwd): the
# secrets are 24 random bytes, so the iteration count is not what protects them.
ITERATIONS = 101
SALT_BYTES = 12

# Nothing is allowed unless a role grants it; a refused SUBSCRIBE gets SUBACK 135.
DEFAULT_ACCESS = {
    "publishClientSend": False,
    "publishClientReceive": False,
    "subscribe": False,
    "unsubscribe": True,
}


def _acl(acltype: str, topic: str) -> dict[str, Any]:
    return {"acltype": acltype, "topic": topic, "priority": 0, "allow": True}


SERVICE_ROLES: dict[str, list[dict[str, Any]]] = {
    # Device messages through a shared subscription only (any group: tests and the chaos run use
    # their own), and the confirmations to every site (contract/acks.py).
    "bridge": [
        _acl("subscribePattern", "$share/+/ws/v1/#"),
        _acl("publishClientReceive", "ws/v1/#"),
        _acl("publishClientSend", "ws/ack/v1/#"),
    ],
    "alerts": [_acl("publishClientSend", "ws/v1/enforcement/#")],
    "officer": [
        _acl("subscribePattern", "ws/v1/enforcement/#"),
        _acl("publishClientReceive", "ws/v1/enforcement/#"),
    ],
}


def site_role(site: str) -> list[dict[str, Any]]:
    """A site publishes under its own prefix and reads one topic: its confirmations."""
    return [
        _acl("publishClientSend", f"ws/v1/{site}/#"),
        _acl("subscribeLiteral", f"ws/ack/v1/{site}"),
        _acl("publishClientReceive", f"ws/ack/v1/{site}"),
    ]


def hashed(password: str) -> dict[str, Any]:
    salt = secrets.token_bytes(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, ITERATIONS)
    return {
        "password": base64.b64encode(digest).decode(),
        "salt": base64.b64encode(salt).decode(),
        "iterations": ITERATIONS,
    }


def read_secret(path: Path) -> str:
    lines = path.read_text(encoding="utf-8").splitlines()
    secret = lines[0].rstrip("\r") if lines else ""
    if not secret:
        raise ValueError(f"empty secret in {path}")
    return secret


def build(accounts: list[tuple[str, str, Path]]) -> dict[str, Any]:
    """The plugin's config: one client per account, one role per site and per service kind."""
    clients, roles, kinds = [], [], set()
    for kind, name, secret_file in sorted(accounts, key=lambda a: a[1]):
        if kind == "site":
            role = f"site:{name}"
            roles.append({"rolename": role, "acls": site_role(name)})
        elif kind in SERVICE_ROLES:
            role = kind
            kinds.add(kind)
        else:
            raise ValueError(f"unknown account kind {kind!r} for {name!r}")
        clients.append({"username": name, **hashed(read_secret(secret_file)), "roles": [{"rolename": role}]})
    roles += [{"rolename": k, "acls": SERVICE_ROLES[k]} for k in sorted(kinds)]
    return {"clients": clients, "groups": [], "roles": roles, "defaultACLAccess": DEFAULT_ACCESS}


def parse(lines: list[str]) -> list[tuple[str, str, Path]]:
    accounts = []
    for line in lines:
        if line.strip():
            kind, name, path = line.rstrip("\n").split("\t")
            accounts.append((kind, name, Path(path)))
    return accounts


def write_atomic(path: Path, text: str) -> None:
    """Mode 0600, replaced in one rename: the broker never reads half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".dynsec.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: dynsec.py OUT.json < accounts", file=sys.stderr)
        return 2
    try:
        config = build(parse(sys.stdin.readlines()))
    except (OSError, ValueError) as exc:
        print(f"make-accounts: {exc}", file=sys.stderr)
        return 2
    write_atomic(Path(argv[1]), json.dumps(config, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
