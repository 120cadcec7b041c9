"""``panfs login`` end to end: a real ``panfs login`` process, the drive server's QR-code
endpoints, approval through its admin call, then the written config in use; and the mount
that needs no login at all (the embedded drive)."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.fuse.conftest import Mounted
from tests.support.drive import DriveReader, DriveServer
from tests.support.procs import PANFS, require_fuse, run_panfs, stop, wait_for


class Login:
    """A ``panfs login --no-qr`` child; ``sid`` is its pending login on the server."""

    def __init__(self, drive: DriveServer, config: Path, *args: str, qr: bool = False) -> None:
        self.drive = drive
        self.proc = subprocess.Popen(
            [*PANFS, "login", *([] if qr else ["--no-qr"]), "--config", str(config), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.out: list[str] = []
        assert self.proc.stdout is not None
        while True:  # the QR code (if any), then the line with the URL
            line = self.proc.stdout.readline()
            if not line:
                break
            self.out.append(line)
            if "open: " in line:
                break
        self.sid = "".join(self.out).rsplit("sid=", 1)[-1].strip() if self.out else ""

    def admin(self, action: str) -> None:
        self.drive.admin("POST", f"/admin/qrcode/{self.sid}/{action}")

    def finish(self) -> tuple[int, str, str]:
        try:
            out, err = self.proc.communicate(timeout=60)
        finally:
            stop(self.proc)
        return self.proc.returncode, "".join(self.out) + out, err


def _own_app(drive: DriveServer) -> tuple[str, ...]:
    acct = drive.account
    return (
        "--endpoint",
        drive.url,
        "--client-id",
        acct["client_id"],
        "--client-secret",
        acct["client_secret"],
    )


def _refresh(url: str, style: str, token: str, **creds: str) -> httpx.Response:
    fields = {"grant_type": "refresh_token", "refresh_token": token, **creds}
    if style == "query":
        return httpx.get(url, params=fields, timeout=30)
    return httpx.post(url, json=fields, timeout=30)


class _LoggedIn(Mounted):
    """A mount of the config ``panfs login`` wrote (not one the fixture writes)."""

    def __init__(self, base: Path, drive: DriveServer, config: Path) -> None:
        self.env, self.args, self.base, self.drive = {}, (), base, drive
        self.path = base / "mnt"
        self.path.mkdir(parents=True, exist_ok=True)
        self.cache_dir = base / "cache"
        self.config = config
        self.log = base / "mount.stderr"
        self.proc = None
        self.start()


def _mount(base: Path, drive: DriveServer, config: Path) -> Mounted:
    require_fuse()
    return _LoggedIn(base, drive, config)


def _works(m: Mounted, drive: DriveServer) -> None:
    try:
        (m.path / "hello.txt").write_bytes(b"logged in")
        m.wait_idle()
        assert DriveReader(drive).read("/hello.txt") == b"logged in"
        assert (m.path / "hello.txt").read_bytes() == b"logged in"
        m.check_logs()
    finally:
        m.close()


def test_login_then_mount(tmp_path: Path, drive: DriveServer) -> None:
    base = tmp_path / "m"
    config = tmp_path / "config.yaml"
    kept = {"cache": {"dir": str(base / "cache")}, "upload": {"concurrency": 1}}
    config.write_text(yaml.safe_dump({**kept, "remote": {"drive": "default"}}))
    login = Login(drive, config, *_own_app(drive), qr=True)
    assert "█" in "".join(login.out)  # the QR code, drawn in the terminal
    assert f"{drive.url}/o/oauth/authorize?sid={login.sid}" in login.out[-1]
    login.admin("scan")
    login.admin("approve")
    code, out, err = login.finish()
    assert code == 0, err
    assert err == ""
    assert f"panfs mount ~/pan --config {config}" in out
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    written = yaml.safe_load(config.read_text())
    assert written["cache"] == kept["cache"]  # other keys kept
    assert written["upload"] == kept["upload"]
    assert written["remote"]["drive"] == "default"
    assert written["remote"]["endpoint"] == drive.url
    assert written["remote"]["refresh_token"]

    _works(_mount(base, drive, config), drive)


@pytest.mark.parametrize("style", ["json", "query"])
def test_login_through_a_token_proxy(tmp_path: Path, drive: DriveServer, style: str) -> None:
    config = tmp_path / "config.yaml"
    if style == "json":  # the QR-code URL is found beside .../oauth/access_token
        token_url = f"{drive.url}/proxy/oauth/access_token"
        args: tuple[str, ...] = ("--endpoint", drive.url, "--token-url", token_url)
    else:
        token_url = f"{drive.url}/proxy/token"
        args = (
            "--endpoint",
            drive.url,
            "--token-url",
            token_url,
            "--token-style",
            "query",
            "--qrcode-url",
            f"{drive.url}/proxy/oauth/authorize/qrcode",
        )
    login = Login(drive, config, *args)
    login.admin("approve")
    code, out, err = login.finish()
    assert code == 0, err
    assert "█" not in out  # --no-qr: the URL only
    remote = yaml.safe_load(config.read_text())["remote"]
    assert remote["token_url"] == token_url
    assert remote["token_style"] == style
    assert "client_secret" not in remote  # the proxy holds the app's credentials
    r = _refresh(token_url, style, remote["refresh_token"])  # the written token works
    assert r.status_code == 200, r.text
    assert r.json()["access_token"]
    again = _refresh(token_url, style, remote["refresh_token"])  # and was single-use
    assert again.status_code == 401
    if style == "query":
        assert again.json()["text"]
        assert again.json()["refresh_token"] == ""
    # a mount refreshes through the proxy, in its shape, with no app credentials of its own
    _works(_mount(tmp_path / "m", drive, _login_again(drive, config, args)), drive)


def _login_again(drive: DriveServer, config: Path, args: tuple[str, ...]) -> Path:
    """A fresh login into ``config`` (the one above spent its token), with a cache dir."""
    data = yaml.safe_load(config.read_text())
    data["cache"] = {"dir": str(config.parent / "m" / "cache")}
    config.write_text(yaml.safe_dump(data))
    login = Login(drive, config, *args)
    login.admin("approve")
    code, _, err = login.finish()
    assert code == 0, err
    return config


def _fails(login: Login, *words: str, exit_code: int = 2) -> str:
    code, _, err = login.finish()
    assert code == exit_code  # 2: a fix in the config or the command; 1: the drive/network
    lines = err.strip().splitlines()
    assert len(lines) == 1, err  # one line, no traceback
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def test_login_errors_are_one_line(tmp_path: Path, drive: DriveServer, drive_off: Any) -> None:
    config = tmp_path / "config.yaml"
    login = Login(drive, config, *_own_app(drive))
    login.admin("expire")
    _fails(login, "expired", "panfs login again")
    assert not config.exists()  # nothing written
    acct = drive.account
    bad = Login(
        drive,
        config,
        "--endpoint",
        drive.url,
        "--client-id",
        acct["client_id"],
        "--client-secret",
        "wrong",
    )
    _fails(bad, "refused", "InvalidClientSecret")
    drive.set_faults(
        [
            {"op": "qrcode_status", "action": "status", "status": 503, "body": "busy", "times": 2},
            {
                "op": "access_token",
                "action": "status",
                "status": 400,
                "content_type": "application/json",
                "body": '{"code":"InvalidCode","message":"code is invalid"}',
            },
        ]
    )
    refused = Login(drive, config, *_own_app(drive))  # polls through two 503s, then refused
    refused.admin("approve")
    _fails(refused, "refused", "InvalidCode")
    drive.set_faults([])
    _fails(Login(drive, config, "--endpoint", drive.url), "--client-id", "--token-url")
    _fails(
        Login(drive, config, *_own_app(drive)[2:], "--endpoint", drive_off),
        "cannot reach",
        exit_code=1,
    )
    config.write_text("remote: [unclosed")
    _fails(Login(drive, config, *_own_app(drive)), "not valid YAML")
    config.write_text(yaml.safe_dump({"cache": {"dir": str(tmp_path / "c")}}))
    used = Login(drive, config, *_own_app(drive))
    used.admin("approve")
    assert used.finish()[0] == 0
    with pytest.raises(httpx.HTTPStatusError):  # an approved login cannot be approved again
        used.admin("approve")


@pytest.fixture
def drive_off() -> str:
    """A URL where nothing listens."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_no_login_mounts_the_embedded_drive(tmp_path: Path) -> None:
    """The README's first command: no config, no login; the embedded drive (official rate
    limits on) takes the file."""
    require_fuse()
    xdg = {k: str(tmp_path / k.lower()) for k in ("XDG_CONFIG_HOME", "XDG_DATA_HOME")}
    xdg |= {k: str(tmp_path / k.lower()) for k in ("XDG_CACHE_HOME", "XDG_STATE_HOME")}
    env = dict(os.environ, **xdg)
    mp = tmp_path / "pan"
    mp.mkdir()
    state = tmp_path / "xdg_state_home" / "panfs"  # the daemon's lock lives with its state
    pid = 0
    try:
        r = run_panfs(["mount", str(mp)], env=env, timeout=60)
        assert r.returncode == 0, r.stderr
        pid = int(json.loads((state / "daemon.lock").read_text())["pid"])
        for i in range(20):  # enough calls to meet the limits if the client did not pace
            (mp / f"f{i}.txt").write_bytes(b"embedded %d" % i)
        r = run_panfs(["umount", "--wait", str(mp)], env=env, timeout=300)
        assert r.returncode == 0, r.stderr
        wait_for(lambda: not os.path.exists(f"/proc/{pid}"), "the daemon to exit")
    finally:
        subprocess.run(["fusermount3", "-u", "-z", str(mp)], capture_output=True)
        if pid and os.path.exists(f"/proc/{pid}"):
            os.kill(pid, signal.SIGKILL)
    with DriveServer(tmp_path / "xdg_data_home" / "panfs" / "drive") as drive:
        reader = DriveReader(drive)
        for i in range(20):
            assert reader.read(f"/f{i}.txt") == b"embedded %d" % i
    log = (state / "panfs.log").read_text()
    assert "Traceback" not in log
