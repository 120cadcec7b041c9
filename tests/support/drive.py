"""``DriveServer``: a real ``panfs serve`` process on 127.0.0.1 for tests and benchmarks.

Start it, read its account, switch faults, read its counters and (read-only) its
store, SIGKILL and restart it on the same root. ``close()`` always stops the process by PID.
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support.procs import PANFS, kill9, stop

_LISTEN = re.compile(r"listening on (http://\S+)")


class DriveServer:
    def __init__(self, root: Path, *options: str, log: Path | None = None) -> None:
        self.root = root
        self.options = list(options)
        self.log = log or root.parent / f"{root.name}-server.log"
        self.proc: subprocess.Popen[str] | None = None
        self.http = httpx.Client(timeout=30)  # one client: each new one builds an SSL context
        self.url = ""
        self.port = 0
        self.start()

    # -- process ---------------------------------------------------------------
    def start(self) -> None:
        args = [*PANFS, "serve", "--root", str(self.root), "--port", str(self.port)]
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.log, "a") as err:
            self.proc = subprocess.Popen(
                [*args, *self.options], stdout=subprocess.PIPE, stderr=err, text=True
            )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        m = _LISTEN.search(line)
        if not m:
            stop(self.proc)
            raise AssertionError(f"server did not start: {line!r}; see {self.log}")
        self.url = m.group(1)
        self.port = int(self.url.rsplit(":", 1)[1])

    def kill(self) -> None:
        """SIGKILL the server (same root and port on ``start()``)."""
        assert self.proc is not None
        kill9(self.proc)
        if self.proc.stdout:
            self.proc.stdout.close()

    def restart(self) -> None:
        self.kill()
        self.start()

    def close(self) -> None:
        self.http.close()
        if self.proc is not None:
            stop(self.proc)
            if self.proc.stdout:
                self.proc.stdout.close()

    def __enter__(self) -> DriveServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- account and admin -----------------------------------------------------
    @property
    def account(self) -> dict[str, Any]:
        data: dict[str, Any] = yaml.safe_load((self.root / "account.yaml").read_text())
        return data

    def admin(self, method: str, path: str, json: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {self.account['admin_token']}"}
        r = self.http.request(method, self.url + path, json=json, headers=headers)
        r.raise_for_status()
        return r.json() if r.content else None

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self.admin("GET", "/admin/stats")
        return result

    def reset_stats(self) -> None:
        self.admin("POST", "/admin/stats/reset")

    def set_faults(self, rules: list[dict[str, Any]]) -> None:
        self.admin("POST", "/admin/faults", rules)

    # -- the server's store, read-only (what no API call shows) ----------------------
    def _store(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.root / 'meta.db'}?mode=ro", uri=True, timeout=30)

    def open_sessions(self, folder_id: str = "root") -> int:
        """Upload sessions still open for files anywhere under ``folder_id``."""
        db = self._store()
        try:
            row = db.execute(
                """WITH RECURSIVE sub(id) AS (
                     SELECT ? UNION SELECT f.file_id FROM files f JOIN sub ON f.parent_id = sub.id
                     WHERE f.type = 'folder')
                   SELECT count(*) FROM sessions s JOIN files f ON f.file_id = s.file_id
                   WHERE s.state = 'open' AND f.parent_id IN (SELECT id FROM sub)""",
                (folder_id,),
            ).fetchone()
            return int(row[0])
        finally:
            db.close()

    def landed(self, name: str, parent_id: str = "root") -> int:
        """Files called ``name`` in ``parent_id`` the drive ever made available (completed
        uploads and rapid ones), trashed since or not."""
        db = self._store()
        try:
            row = db.execute(
                "SELECT count(*) FROM files WHERE parent_id = ? AND name = ? AND type = 'file'"
                " AND status IN ('available', 'trashed')",
                (parent_id, name),
            ).fetchone()
            return int(row[0])
        finally:
            db.close()

    def mint_refresh_token(self) -> str:
        token: str = self.admin("POST", "/admin/tokens")["refresh_token"]
        return token

    def client_config(self, cache_dir: Path, **sections: dict[str, Any]) -> dict[str, Any]:
        """A panfs config mapping for a fresh client of this server (own refresh token)."""
        acct = self.account
        cfg: dict[str, Any] = {
            "remote": {
                "endpoint": acct["endpoint"],
                "client_id": acct["client_id"],
                "client_secret": acct["client_secret"],
                "refresh_token": self.mint_refresh_token(),
            },
            "cache": {"dir": str(cache_dir)},
        }
        for name, values in sections.items():
            cfg.setdefault(name, {}).update(values)
        return cfg

    def write_client_config(self, path: Path, cache_dir: Path, **sections: dict[str, Any]) -> Path:
        path.write_text(yaml.safe_dump(self.client_config(cache_dir, **sections)))
        return path


class DriveReader:
    """Reads the drive through the Open API, as any other client would (for assertions).

    Its calls carry the admin token (``x-panfs-admin``): an assertion spends none of the
    rate budget of the client under test, and never meets a 429."""

    def __init__(self, server: DriveServer) -> None:
        acct = server.account
        self.base = server.url
        self.http = server.http
        r = self.http.post(
            f"{self.base}/oauth/access_token",
            json={
                "client_id": acct["client_id"],
                "client_secret": acct["client_secret"],
                "grant_type": "refresh_token",
                "refresh_token": server.mint_refresh_token(),
            },
            timeout=30,
        )
        r.raise_for_status()
        self.headers = {
            "Authorization": f"Bearer {r.json()['access_token']}",
            "x-panfs-admin": acct["admin_token"],
        }
        info = self._api("user/getDriveInfo", {})
        self.drive_id = info["default_drive_id"]

    def _post(self, op: str, body: dict[str, Any]) -> httpx.Response:
        return self.http.post(
            f"{self.base}/adrive/v1.0/{op}", json=body, headers=self.headers, timeout=60
        )

    def _api(self, op: str, body: dict[str, Any]) -> Any:
        r = self._post(op, body)
        r.raise_for_status()
        return r.json()

    def get(self, path: str) -> dict[str, Any] | None:
        r = self._post("openFile/get_by_path", {"drive_id": self.drive_id, "file_path": path})
        if r.status_code == 404:
            return None
        r.raise_for_status()
        data: dict[str, Any] = r.json()
        return data

    def list(self, path: str = "/") -> list[dict[str, Any]]:
        folder = "root" if path == "/" else (self.get(path) or {}).get("file_id")
        items: list[dict[str, Any]] = []
        marker = ""
        while True:
            page = self._api(
                "openFile/list",
                {"drive_id": self.drive_id, "parent_file_id": folder, "marker": marker},
            )
            items += page["items"]
            marker = page.get("next_marker") or ""
            if not marker:
                return items

    def names(self, path: str = "/") -> dict[str, int]:
        """How many items of each name the folder ``path`` holds (2+ = duplicates)."""
        counts: dict[str, int] = {}
        for item in self.list(path):
            counts[item["name"]] = counts.get(item["name"], 0) + 1
        return counts

    def read(self, path: str) -> bytes:
        meta = self.get(path)
        assert meta is not None, f"{path} is not on the drive"
        url = self._api(
            "openFile/getDownloadUrl", {"drive_id": self.drive_id, "file_id": meta["file_id"]}
        )["url"]
        r = self.http.get(url, timeout=300)
        r.raise_for_status()
        return r.content
