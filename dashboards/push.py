"""`wastestream dashboards push --url --token`: put the generated dashboards into a running Grafana.

Creates the folder if needed and overwrites each dashboard by uid (grafana-client). For a
Grafana that provisions from files (deploy/production), this is not needed; it is for a Grafana
run by someone else. Failures are one line on stderr and a non-zero exit: unreachable (3),
token refused (4), anything else Grafana rejects (5).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dashboards.generate import OUT_DIR
from wastestream.foundation import cliutil

FOLDER_UID, FOLDER_TITLE = "wastestream", "wastestream"
EXIT_UNREACHABLE, EXIT_AUTH, EXIT_REJECTED = 3, 4, 5


class PushError(RuntimeError):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def load_dashboards(directory: Path = OUT_DIR) -> list[dict[str, Any]]:
    """The committed JSON (what provisioning would load), not a fresh build: push what was reviewed."""
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(directory.glob("ws-*.json"))]


def push(url: str, token: str, models: list[dict[str, Any]], timeout: float = 10.0) -> list[str]:
    """Folder, then each dashboard (overwrite); returns the dashboards' URLs as Grafana reports them."""
    from grafana_client import GrafanaApi

    api = GrafanaApi.from_url(url, credential=token, timeout=timeout)
    with _errors(url):
        try:
            api.folder.get_folder(FOLDER_UID)
        except Exception as exc:
            if getattr(exc, "status_code", None) != 404:
                raise
            api.folder.create_folder(FOLDER_TITLE, uid=FOLDER_UID)
        urls = []
        for model in models:
            body = {"dashboard": {**model, "id": None}, "folderUid": FOLDER_UID, "overwrite": True,
                    "message": "wastestream dashboards push"}
            answer = api.dashboard.update_dashboard(body)
            urls.append(str(answer.get("url", model["uid"])))
        return urls


class _errors:
    """Map grafana-client's and the HTTP library's exceptions to one-line PushErrors."""

    def __init__(self, url: str) -> None:
        self.url = url

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc is None or isinstance(exc, PushError):
            return
        from grafana_client.client import GrafanaClientError, GrafanaException, GrafanaTimeoutError

        status = getattr(exc, "status_code", None)
        if isinstance(exc, GrafanaClientError) and status in (401, 403):
            raise PushError(f"Grafana at {self.url} refused the token ({status}): check --token "
                            "(a service-account token with Editor rights on the folder)", EXIT_AUTH) from exc
        if isinstance(exc, GrafanaTimeoutError) or (isinstance(exc, GrafanaException) and not status) \
                or _is_connection_error(exc):
            raise PushError(f"cannot reach Grafana at {self.url}: {_first_line(exc)}",
                            EXIT_UNREACHABLE) from exc
        if isinstance(exc, GrafanaException):
            raise PushError(f"Grafana at {self.url} rejected the push ({status}): {_first_line(exc)}",
                            EXIT_REJECTED) from exc


def _is_connection_error(exc: BaseException) -> bool:
    import niquests

    return isinstance(exc, (niquests.exceptions.ConnectionError, niquests.exceptions.Timeout, OSError))


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def main(argv: Sequence[str] | None = None) -> int:
    parser = cliutil.parser("wastestream dashboards push", __doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("GRAFANA_URL"),
                        help="Grafana base URL ($GRAFANA_URL)")
    parser.add_argument("--token", default=os.environ.get("GRAFANA_TOKEN"),
                        help="service-account token ($GRAFANA_TOKEN)")
    parser.add_argument("--dir", type=Path, default=OUT_DIR, help="directory of the dashboard JSON")
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args(argv)
    if not args.url or not args.token:
        print("wastestream dashboards push: --url and --token are required", file=sys.stderr)
        return 2
    models = load_dashboards(args.dir)
    if not models:
        print(f"wastestream dashboards push: no ws-*.json in {args.dir}", file=sys.stderr)
        return 2
    try:
        urls = push(args.url.rstrip("/"), args.token, models, args.timeout)
    except PushError as exc:
        print(f"wastestream dashboards push: {exc}", file=sys.stderr)
        return exc.code
    for u in urls:
        print(f"pushed {args.url.rstrip('/')}{u}")
    return 0
