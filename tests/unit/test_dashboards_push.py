"""`wastestream dashboards push` against a STUB of Grafana's HTTP API (not a Grafana).

Grafana cannot run here, so a small http.server on loopback answers the three endpoints the
push uses, the way Grafana documents them: GET/POST /api/folders, POST /api/dashboards/db,
with 401 for a wrong bearer token (and 403 for a token without rights). The test proves the
client side (requests made, bodies, overwrite, error handling), not Grafana's behaviour.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from dashboards.push import EXIT_AUTH, EXIT_UNREACHABLE, load_dashboards, main

GOOD, READ_ONLY = "good-token", "viewer-token"


class GrafanaStub(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.folders: dict[str, str] = {}
        self.dashboards: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []


class Handler(BaseHTTPRequestHandler):
    server: GrafanaStub

    def log_message(self, *args: object) -> None:
        pass

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorised(self, write: bool) -> bool:
        self.server.requests.append((self.command, self.path))
        token = self.headers.get("Authorization", "").removeprefix("Bearer ")
        if token not in (GOOD, READ_ONLY):
            self._reply(401, {"message": "invalid API key"})
            return False
        if write and token == READ_ONLY:
            self._reply(403, {"message": "Access denied"})
            return False
        return True

    def do_GET(self) -> None:
        if not self._authorised(write=False):
            return
        uid = self.path.removeprefix("/api/folders/")
        if self.path.startswith("/api/folders/") and uid in self.server.folders:
            self._reply(200, {"uid": uid, "title": self.server.folders[uid]})
        else:
            self._reply(404, {"message": "folder not found"})

    def do_POST(self) -> None:
        if not self._authorised(write=True):
            return
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path == "/api/folders":
            self.server.folders[body["uid"]] = body["title"]
            self._reply(200, {"uid": body["uid"], "title": body["title"]})
        elif self.path == "/api/dashboards/db":
            dash = body["dashboard"]
            if dash["uid"] in self.server.dashboards and not body.get("overwrite"):
                self._reply(412, {"message": "version-mismatch"})
                return
            self.server.dashboards[dash["uid"]] = body
            self._reply(200, {"status": "success", "uid": dash["uid"], "url": f"/d/{dash['uid']}/x"})
        else:
            self._reply(404, {"message": "not found"})


@pytest.fixture
def grafana() -> Iterator[GrafanaStub]:
    server = GrafanaStub()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def url(server: GrafanaStub) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def test_push_creates_folder_and_overwrites_dashboards(grafana: GrafanaStub,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--url", url(grafana), "--token", GOOD]) == 0
    models = load_dashboards()
    assert grafana.folders == {"wastestream": "wastestream"}
    assert set(grafana.dashboards) == {m["uid"] for m in models}
    for body in grafana.dashboards.values():
        assert body["folderUid"] == "wastestream" and body["overwrite"] is True
        assert body["dashboard"]["id"] is None and body["dashboard"]["panels"]
    assert len(capsys.readouterr().out.splitlines()) == len(models)
    assert main(["--url", url(grafana), "--token", GOOD]) == 0  # again: folder exists, dashboards overwritten
    assert ("POST", "/api/folders") in grafana.requests
    assert sum(1 for r in grafana.requests if r == ("POST", "/api/folders")) == 1


@pytest.mark.parametrize("token, status", [("wrong-token", "401"), (READ_ONLY, "403")])
def test_refused_token_is_one_line_and_nonzero(grafana: GrafanaStub, capsys: pytest.CaptureFixture[str],
                                               token: str, status: str) -> None:
    assert main(["--url", url(grafana), "--token", token]) == EXIT_AUTH
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "refused the token" in err and status in err
    assert not grafana.dashboards


def test_unreachable_grafana_is_one_line_and_nonzero(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["--url", f"http://127.0.0.1:{port}", "--token", GOOD, "--timeout", "3"]) == EXIT_UNREACHABLE
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot reach Grafana" in err, err


def test_missing_arguments(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GRAFANA_URL", raising=False)
    monkeypatch.delenv("GRAFANA_TOKEN", raising=False)
    assert main([]) == 2
