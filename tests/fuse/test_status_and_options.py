"""``panfs status --watch`` on a terminal, and ``allow_other`` only when asked."""

from __future__ import annotations

import contextlib
import errno
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fuse.conftest import Mounted
from tests.support.drive import DriveServer
from tests.support.procs import PANFS, require_fuse, stop, wait_for

pytestmark = pytest.mark.fuse

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


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


def _drain(fd: int) -> bytes:
    """What a terminal whose other side is closed still holds."""
    out = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: drained
            return out
        if not chunk:
            return out
        out += chunk


def test_status_watch_draws_bars_on_a_terminal(mount: Callable[..., Mounted]) -> None:
    m = mount(upload={"part_size": "256KiB"})
    # slow enough that the file is still uploading while the watch draws (finished files go)
    m.drive.set_faults([{"op": "put_part", "action": "delay", "ms": 2000}])
    (m.path / "slow.bin").write_bytes(os.urandom(4 << 20))
    master, slave = pty.openpty()
    p = subprocess.Popen(
        [*PANFS, "status", "--watch", "--config", str(m.config)],
        stdin=slave, stdout=slave, stderr=slave, preexec_fn=_ctrl_c_ends_it,
        env=dict(os.environ, COLUMNS="120", PYTHONFAULTHANDLER="1"),
    )  # fmt: skip
    os.close(slave)
    try:
        screen = ""
        for _ in range(20):  # until a bar with the file was drawn (a busy machine starts slowly)
            screen += _read_for(master, 1.0).decode(errors="replace")
            if "/slow.bin" in screen and "━" in screen and "MiB" in screen:
                break
        p.send_signal(signal.SIGINT)
        screen += _read_for(master, 1.0).decode(errors="replace")
        try:
            code = p.wait(60)  # a hang guard: a loaded machine may take a while
        except subprocess.TimeoutExpired:
            raise AssertionError(_hang_report(p)) from None
        assert code == 0
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
    require_fuse()
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


def _status_json(m: Mounted, *extra: str) -> tuple[int, dict[str, object]]:
    import json

    r = subprocess.run([*PANFS, "status", "--json", "--config", str(m.config), *extra],
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode in (0, 3), r.stderr
    return r.returncode, json.loads(r.stdout)


def test_status_with_no_daemon_shows_cut_off_writes(mounted: Mounted) -> None:
    """The daemon dies while a writer is still open: with no daemon running, status reads the
    same state, lists the cut-off write (not 'every file is on the drive'), exits 3."""
    m = mounted
    (m.path / "whole.txt").write_bytes(b"w" * 1000)
    m.wait_idle()
    f = open(m.path / "cut.bin", "wb")  # noqa: SIM115 (held open across the kill)
    f.write(b"c" * (1 << 20))
    f.flush()
    os.fsync(f.fileno())  # the bytes reached the daemon (the kernel's writeback cache holds them)
    m.kill()
    with contextlib.suppress(OSError):
        f.close()
    r = subprocess.run([*PANFS, "status", "--config", str(m.config)], capture_output=True,
                       text=True)  # fmt: skip
    assert r.returncode == 3, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("the panfs daemon is not running (state ")
    assert any(ln.startswith('interrupted  "/cut.bin"') for ln in lines), r.stdout
    assert "every file is on the drive" not in r.stdout
    assert "panfs forget PATH" in r.stdout
    code, data = _status_json(m)
    assert (code, data["daemon"]) == (3, False)
    m.remount()  # the cut-off version is kept, as the mount shows it
    assert (m.path / "cut.bin").stat().st_size == 1 << 20


def test_status_says_the_drive_is_unreachable_instead_of_a_stale_rate(
    tmp_path: Path, drive: DriveServer
) -> None:
    require_fuse()
    m = Mounted(tmp_path / "m", drive, upload={"part_size": "256KiB"},
                remote={"unreachable_after": 1})  # fmt: skip
    try:
        drive.set_faults([{"op": "put_part", "action": "delay", "ms": 100}])
        body = os.urandom(4 << 20)
        (m.path / "f.bin").write_bytes(body)
        wait_for(lambda: drive.stats()["parts_stored"] >= 4, "some parts", m.proc)  # type: ignore[arg-type]
        drive.kill()  # the drive is gone: connection refused
        wait_for(lambda: _status_json(m)[1]["unreachable_since"] is not None, "status to notice",
                 m.proc, limit=60)  # type: ignore[arg-type]  # fmt: skip
        r = subprocess.run([*PANFS, "status", "--config", str(m.config)], capture_output=True,
                           text=True)  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert "the drive has not acknowledged anything since" in r.stdout
        assert "/s" not in r.stdout  # no stale rate
        assert "ETA" not in r.stdout
        _, data = _status_json(m)
        assert [f["rate"] for f in data["files"]] == [0]  # type: ignore[attr-defined]
        drive.start()
        drive.set_faults([])
        m.wait_idle()
        from tests.support.drive import DriveReader

        assert DriveReader(drive).read("/f.bin") == body
        m.check_logs(allow=(r'WARNING panfs\.daemon: upload of "/f\.bin"',))
    finally:
        m.close()


def _read_until(p: subprocess.Popen[bytes], done: Callable[[str], bool], what: str) -> str:
    """Lines ``p`` prints on its pipe, read until ``done(everything so far)``."""
    assert p.stdout is not None
    fd = p.stdout.fileno()
    text = ""

    def seen() -> bool:
        nonlocal text
        if select.select([fd], [], [], 0.1)[0]:
            text += os.read(fd, 65536).decode()
        return done(text)

    wait_for(seen, what, p, limit=60)  # type: ignore[arg-type]
    return text


def _on_its_way(text: str) -> bool:
    return any('"/w.bin"' in ln and ("pending" in ln or "uploading" in ln)
               for ln in text.splitlines())  # fmt: skip


def _ctrl_c_ends_it() -> None:
    """In the child: SIGINT as a terminal's foreground job gets it, whatever the runner's
    (a suite started in the background of a shell ignores SIGINT, and children inherit it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _hang_report(p: subprocess.Popen[bytes]) -> str:
    """Why a watch did not end at Ctrl-C: its signal masks and state, then its stack
    (faulthandler, enabled in the child by PYTHONFAULTHANDLER, dumps it at SIGABRT)."""
    try:
        status = Path(f"/proc/{p.pid}/status").read_text()
        wchan = Path(f"/proc/{p.pid}/wchan").read_text()
    except OSError as e:
        status, wchan = str(e), ""
    fields = [ln for ln in status.splitlines() if ln.startswith(("State", "Sig", "Shd"))]
    p.send_signal(signal.SIGABRT)
    with contextlib.suppress(subprocess.TimeoutExpired, ValueError, OSError):
        p.wait(10)
    err = b""
    with contextlib.suppress(ValueError, OSError):
        err = p.stderr.read() if p.stderr is not None else b""
    return (
        "status --watch ignored SIGINT: "
        + "; ".join(fields)
        + f"; wchan {wchan}\n"
        + (err.decode(errors="replace")[-4000:])
    )


def test_status_watch_prints_plain_lines_when_piped(mount: Callable[..., Mounted]) -> None:
    m = mount(upload={"part_size": "256KiB"})
    # the drive refuses every part until the watch has shown the file on its way
    m.drive.set_faults([{"op": "put_part", "action": "status", "status": 503, "body": "busy"}])
    p = subprocess.Popen([*PANFS, "status", "--watch", "--config", str(m.config)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         preexec_fn=_ctrl_c_ends_it,
                         env=dict(os.environ, PYTHONFAULTHANDLER="1"))  # fmt: skip
    try:
        (m.path / "w.bin").write_bytes(os.urandom(4 << 20))
        text = _read_until(p, _on_its_way, "a line with the file on its way")
        m.drive.set_faults([])
        m.wait_idle()
        finished = re.compile(r'^\d\d:\d\d:\d\d finished +"/w\.bin"$', re.M)
        text += _read_until(p, lambda t: finished.search(t) is not None, "finished")
        p.send_signal(signal.SIGINT)
        try:
            out, err = p.communicate(timeout=60)  # a hang guard, not a speed limit
        except subprocess.TimeoutExpired:
            raise AssertionError(_hang_report(p)) from None
    finally:
        stop(p)
    text += out.decode()
    assert p.returncode == 0, err
    assert "\x1b" not in text  # no terminal codes in a pipe
    assert _on_its_way(text), text
    assert finished.search(text), text


def test_umount_wait_shows_progress_on_a_terminal(mount: Callable[..., Mounted]) -> None:
    m = mount(upload={"part_size": "256KiB"})
    # 16 parts of 300 ms each: the file is still on its way while umount draws its bar
    m.drive.set_faults([{"op": "put_part", "action": "delay", "ms": 300}])
    (m.path / "p.bin").write_bytes(os.urandom(4 << 20))
    master, slave = pty.openpty()
    try:
        m.panfs("umount", "--wait", str(m.path), limit=120, stdin=slave, stdout=slave,
                stderr=slave)  # fmt: skip
        os.close(slave)
        slave = -1
        screen = _drain(master).decode(errors="replace")
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    assert "waiting for 1 file(s):" in screen
    assert "MiB" in screen


def test_uid_gid_umask_are_honoured(world_base: Path, drive: DriveServer) -> None:
    m = Mounted(world_base, drive, args=("-o", "uid=65534,gid=65534,umask=027"))
    try:
        st = os.stat(m.path)
        assert (st.st_uid, st.st_gid) == (65534, 65534)
        assert st.st_mode & 0o027 == 0
        (m.path / "f.txt").write_bytes(b"x")
        os.chmod(m.path / "f.txt", 0o666)
        assert os.stat(m.path / "f.txt").st_mode & 0o777 == 0o640
    finally:
        m.close()


def test_unknown_mount_option_is_refused_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "mp").mkdir()
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"cache:\n  dir: {tmp_path / 'cache'}\n")
    mp = tmp_path / "mp"
    r = subprocess.run([*PANFS, "mount", "--config", str(cfg), "-o", "uid=1,fast", str(mp)],
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 2
    assert r.stderr.splitlines() == [
        "panfs mount: error: unknown mount option 'fast'; known: uid=, gid=, umask=, ro, "
        "allow_other, default_permissions, config=FILE"
    ]


def test_status_of_a_mount_point_finds_its_daemon_whatever_config(
    mounted: Mounted, tmp_path: Path
) -> None:
    """Another user's shell (another XDG dir, no registry, no config) still finds the state
    dir of the mount from its fsname in /proc/self/mountinfo."""
    import json

    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "elsewhere"),
               XDG_CONFIG_HOME=str(tmp_path / "nocfg"))  # fmt: skip
    r = subprocess.run([*PANFS, "status", "--json", str(mounted.path)], capture_output=True,
                       text=True, env=env)  # fmt: skip
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert (data["state_dir"], data["daemon"]) == (str(mounted.cache_dir), True)


def test_routine_missing_names_do_not_fill_the_log(mounted: Mounted) -> None:
    m = mounted
    for i in range(30):
        assert not (m.path / f"probe-{i}.txt").exists()  # shells and file managers do this
    (m.path / "real.txt").write_bytes(b"r")
    m.wait_idle()
    log = (m.cache_dir / "panfs.log").read_text()
    assert "probe-" not in log
    assert "(errno 2)" not in log


def test_ro_mount_refuses_writes(tmp_path: Path, drive: DriveServer) -> None:
    require_fuse()
    m = Mounted(tmp_path / "m", drive, args=("-o", "ro,default_permissions,_netdev"))
    try:
        with pytest.raises(OSError, match="Read-only file system") as info:
            (m.path / "no.txt").write_bytes(b"x")
        assert info.value.errno == errno.EROFS
        assert os.listdir(m.path) == []
    finally:
        m.close()


def test_sigusr2_logs_what_each_task_waits_on_and_the_mount_goes_on(mounted: Mounted) -> None:
    assert mounted.proc is not None
    log = mounted.cache_dir / "panfs.log"
    assert f"(pid {mounted.proc.pid}," in log.read_text()  # the pid to send it to
    os.kill(mounted.proc.pid, signal.SIGUSR2)
    wait_for(lambda: "what each task waits on (SIGUSR2)" in log.read_text(), "the task dump")
    dump = log.read_text().split("what each task waits on (SIGUSR2):", 1)[1]
    assert "panfs/versions.py:" in dump  # the publisher, parked where it waits for closes
    assert "panfs/daemon.py:" in dump
    (mounted.path / "after.txt").write_bytes(b"still here")
    assert (mounted.path / "after.txt").read_bytes() == b"still here"
    mounted.check_logs(allow=("what each task waits on",))
