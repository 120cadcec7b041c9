"""Bench helper: start ``panfs serve`` on a temp root and get an access token (raw HTTP).

The server stands in for a remote service, so it should not take its CPU from the client
under test (nor the client from it): ``split_cpus()`` gives the server one half of the CPUs
and the calling process (and what it starts later) the other half. On one CPU it does
nothing.
Must not: start or measure clients (``_common`` holds the mounts, each bench its figures).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
import yaml
from _common import stop


def split_cpus() -> tuple[set[int], set[int]] | None:
    """(server CPUs, client CPUs), or None on a single CPU."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    half = len(cpus) // 2
    return set(cpus[:half]), set(cpus[half:])


SERVE = [sys.executable, "-m", "panfs", "serve"]


class Drive:
    def __init__(self, root: Path, server_cpus: set[int] | None = None) -> None:
        def pin() -> None:
            if server_cpus:
                os.sched_setaffinity(0, server_cpus)

        self.proc = subprocess.Popen(
            # throughput is measured here, not pacing: the official rate limits are off
            [*SERVE, "--root", str(root), "--port", "0", "--no-rate-limits"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            preexec_fn=pin,
        )
        assert self.proc.stdout is not None
        try:
            line = self.proc.stdout.readline().split()
            if not line:
                raise SystemExit(f"panfs serve did not start ({self.proc.poll()})")
            self.url = line[-1]
            self.account: dict[str, Any] = yaml.safe_load((root / "account.yaml").read_text())
            self.admin = {"Authorization": f"Bearer {self.account['admin_token']}"}
        except BaseException:
            self.close()
            raise

    def token(self) -> str:
        r = httpx.post(f"{self.url}/admin/tokens", headers=self.admin)
        tok: str = r.json()["refresh_token"]
        return tok

    def access(self) -> tuple[str, str]:
        r = httpx.post(
            f"{self.url}/oauth/access_token",
            json={
                "client_id": self.account["client_id"],
                "client_secret": self.account["client_secret"],
                "grant_type": "refresh_token",
                "refresh_token": self.token(),
            },
        )
        access = r.json()["access_token"]
        h = {"Authorization": f"Bearer {access}"}
        drive_id = httpx.post(
            f"{self.url}/adrive/v1.0/user/getDriveInfo", json={}, headers=h
        ).json()["default_drive_id"]
        return access, drive_id

    def create_file(
        self, http: httpx.Client, name: str, size: int, parts: int
    ) -> tuple[dict[str, str], dict[str, Any]]:
        """A new upload session in the root: (auth headers, the create answer + drive_id)."""
        access, drive_id = self.access()
        h = {"Authorization": f"Bearer {access}"}
        created: dict[str, Any] = http.post(
            f"{self.url}/adrive/v1.0/openFile/create",
            headers=h,
            json={
                "drive_id": drive_id,
                "parent_file_id": "root",
                "name": name,
                "type": "file",
                "size": size,
                "part_info_list": [{"part_number": i} for i in range(1, parts + 1)],
            },
        ).json()
        created["drive_id"] = drive_id
        return h, created

    def put_file(
        self, name: str, size: int, part_size: int, body: Callable[[int], bytes | Iterable[bytes]]
    ) -> dict[str, Any]:
        """Create ``name`` in the root, PUT its parts raw (``body(n)``: part n's bytes, from 0)
        and complete it: the create answer with drive_id and the auth ``headers``."""
        with httpx.Client(timeout=600) as http:
            h, c = self.create_file(http, name, size, (size + part_size - 1) // part_size)
            for n, info in enumerate(c["part_info_list"]):
                r = http.put(info["upload_url"], content=body(n))
                assert r.status_code == 200, r.text
            self.complete(http, h, c)
        c["headers"] = h
        return c

    def complete(self, http: httpx.Client, h: dict[str, str], c: dict[str, Any]) -> None:
        r = http.post(
            f"{self.url}/adrive/v1.0/openFile/complete",
            headers=h,
            json={"drive_id": c["drive_id"], "file_id": c["file_id"], "upload_id": c["upload_id"]},
        )
        assert r.status_code == 200, r.text

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = httpx.get(f"{self.url}/admin/stats", headers=self.admin).json()
        return out

    def close(self) -> None:
        stop(self.proc, wait=10)
        if self.proc.stdout:
            self.proc.stdout.close()


def pinned_drive(root: Path) -> Drive:
    """A Drive on one half of the CPUs, this process (and what it starts) on the other."""
    split = split_cpus()
    drive = Drive(root, split[0] if split else None)
    if split:
        os.sched_setaffinity(0, split[1])
        print(f"server on CPUs {sorted(split[0])}, clients on CPUs {sorted(split[1])}")
    return drive
