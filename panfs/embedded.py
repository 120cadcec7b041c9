"""The embedded default: a drive server child on loopback for ``panfs mount`` with no config.

Owns: starting ``panfs serve`` on ``DATA_DIR/drive`` as a child process that dies
with its parent, waiting for its ``listening on`` line, and giving back the
account file a client config can point at. Must not: import ``panfs.server``
(the server runs in its own process, so the mount's memory and GIL stay its own).
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from panfs.atomic import write_atomic
from panfs.errors import LocalError

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


@dataclass
class EmbeddedDrive:
    root: Path
    proc: subprocess.Popen[str]
    url: str

    @property
    def account_file(self) -> Path:
        return self.root / "account.yaml"

    def mint_refresh_token(self) -> str:
        """A fresh refresh token for this start (single-use: the account's may be spent)."""
        acct = yaml.safe_load(self.account_file.read_text())
        r = httpx.post(
            f"{self.url}/admin/tokens",
            headers={"Authorization": f"Bearer {acct['admin_token']}"},
            timeout=httpx.Timeout(30.0),
        )
        r.raise_for_status()
        token: str = r.json()["refresh_token"]
        return token

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()


def start(data_dir: Path, log: Path) -> EmbeddedDrive:
    root = data_dir / "drive"
    root.mkdir(parents=True, exist_ok=True)
    port_file = root / "port"
    port = port_file.read_text().strip() if port_file.exists() else "0"
    # -P: a folder named panfs in the current directory must not shadow the package
    args = [sys.executable, "-P", "-m", "panfs", "serve", "--root", str(root), "--port", port]
    with open(log, "a") as err:
        proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=err,
            stdin=subprocess.DEVNULL,
            text=True,
            preexec_fn=_die_with_parent,
        )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("listening on "):
        if port != "0" and proc.wait(10) != 0:
            # the remembered port is taken: pick a free one (the account records the endpoint)
            port_file.unlink(missing_ok=True)
            return start(data_dir, log)
        raise LocalError(f"the embedded drive server did not start; see {log}")
    url = line.split()[-1]
    write_atomic(port_file, url.rsplit(":", 1)[1])
    return EmbeddedDrive(root, proc, url)
