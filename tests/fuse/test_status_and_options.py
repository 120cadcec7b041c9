"""``panfs status --watch`` on a terminal, and ``allow_other`` only when asked."""

from __future__ import annotations

import os
import pty
import select
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fuse.conftest import Mounted
from tests.support.drive import DriveServer
from tests.support.procs import PANFS, stop

pytestmark = pytest.mark.fuse

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def _needs_fuse() -> None:
    if not os.path.exists("/dev/fuse") or os.geteuid() != 0:
        pytest.skip("needs root and /dev/fuse")


def _read_for(fd: int, seconds: float) -> bytes:
    out = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                out += os.read(fd, 65536)
            except OSError:
                break
    return out


def test_status_watch_draws_bars_on_a_terminal(mounted: Mounted) -> None:
    m = mounted
    m.drive.set_faults([{"op": "put_part", "action": "delay", "ms": 400}])
    (m.path / "slow.bin").write_bytes(os.urandom(40 << 20))
    master, slave = pty.openpty()
    p = subprocess.Popen(
        [*PANFS, "status", "--watch", "--config", str(m.config)],
        stdin=slave, stdout=slave, stderr=slave, env=dict(os.environ, COLUMNS="120"),
    )  # fmt: skip
    os.close(slave)
    try:
        screen = _read_for(master, 3.0).decode(errors="replace")
        p.send_signal(signal.SIGINT)
        screen += _read_for(master, 1.0).decode(errors="replace")
        assert p.wait(10) == 0
    finally:
        stop(p)
        os.close(master)
    assert "/slow.bin" in screen
    assert "MiB" in screen  # bytes sent / total on the bar
    assert "━" in screen  # a bar was drawn
    assert "Traceback" not in screen
    m.drive.set_faults([])


@pytest.fixture
def world_base(drive: DriveServer) -> Iterator[Path]:
    """A base directory other users can traverse (pytest's tmp dirs are 0700)."""
    _needs_fuse()
    base = Path(tempfile.mkdtemp(prefix="panfs-ao-"))
    os.chmod(base, 0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _as_nobody(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*NOBODY, *cmd], capture_output=True, text=True)


@pytest.mark.parametrize("allow_other", [False, True])
def test_other_users_only_with_allow_other(
    world_base: Path, drive: DriveServer, allow_other: bool
) -> None:
    m = Mounted(world_base, drive, args=("-o", "allow_other") if allow_other else ())
    try:
        os.chmod(m.path, 0o755)
        (m.path / "f.txt").write_bytes(b"shared")
        os.chmod(m.path / "f.txt", 0o644)
        r = _as_nobody("cat", str(m.path / "f.txt"))
        if allow_other:
            assert (r.returncode, r.stdout) == (0, "shared"), r.stderr
            # default_permissions: the kernel checks modes, so nobody may not write a 0644 file
            w = _as_nobody("sh", "-c", f"echo x >> {m.path / 'f.txt'}")
            assert w.returncode != 0
            assert "Permission denied" in w.stderr
        else:
            assert r.returncode != 0
            assert "Permission denied" in r.stderr
        assert (m.path / "f.txt").read_bytes() == b"shared"
    finally:
        m.close()
