"""Nothing stranded: ``umount --wait`` waits for every closed file, a dead daemon's mount is
recovered by panfs itself, a mount that is not panfs is left alone, and a file the drive
refused comes back with ``panfs retry``."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fuse.conftest import Mounted
from tests.support.drive import DriveReader, DriveServer
from tests.support.procs import (
    PANFS,
    kill9,
    require_fuse,
    run_panfs,
    run_panfs_reaping,
    stop,
    wait_for,
)
from tests.support.scale import pick

pytestmark = pytest.mark.fuse


def _source(path: Path, size: int) -> str:
    """A file of ``size`` bytes (distinct 1 MiB blocks); its SHA-1 as the drive shows it."""
    h = hashlib.sha1()
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for i in range(size >> 20):
            chunk = i.to_bytes(4, "little") + block[4:]
            f.write(chunk)
            h.update(chunk)
    return h.hexdigest().upper()


def _daemon_pid(state_dir: Path) -> int:
    try:
        return int(json.loads((state_dir / "daemon.lock").read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return 0


def _kill_pid(pid: int) -> None:
    if pid > 0:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
def test_umount_wait_returns_only_once_a_2gib_dd_is_on_the_drive(
    mounted: Mounted, tmp_path: Path
) -> None:
    """The kernel's RELEASE (and the fsync before the job is written) come after dd's close
    returned: --wait must count a version that is closed but not yet queued."""
    src = tmp_path / "src.bin"
    size = pick(2 << 30, 64 << 20)
    sha1 = _source(src, size)
    subprocess.run(
        ["dd", f"if={src}", f"of={mounted.path / 'big.bin'}", "bs=4M", "status=none"], check=True
    )
    mounted.panfs("umount", "--wait", str(mounted.path), limit=900)
    assert not os.path.ismount(mounted.path)
    meta = DriveReader(mounted.drive).get("/big.bin")  # on the drive the moment it returned
    assert meta is not None
    assert (meta["size"], meta["content_hash"]) == (size, sha1)


def test_umount_wait_waits_for_a_queue_behind_a_slow_drive(mounted: Mounted) -> None:
    m = mounted
    m.drive.set_faults([{"op": "put_part", "action": "delay", "ms": 300}])
    data = {f"q{i}.bin": os.urandom((1 + i) << 20) for i in range(4)}
    for name, body in data.items():
        (m.path / name).write_bytes(body)
    m.panfs("umount", "--wait", str(m.path), limit=300)
    reader = DriveReader(m.drive)
    for name, body in data.items():
        assert reader.read(f"/{name}") == body
    m.drive.set_faults([])


def test_kill9_then_panfs_mount_recovers_and_uploads_resume(mounted: Mounted) -> None:
    """kill -9 leaves a dead mount (ENOTCONN): ``panfs mount`` alone detaches it, says so in
    one line, mounts, and the file that was waiting reaches the drive."""
    m = mounted
    m.drive.set_faults([{"op": "put_part", "action": "status", "status": 503, "body": "busy"}])
    body = os.urandom(3 << 20)
    (m.path / "waiting.bin").write_bytes(body)
    wait_for(lambda: m.drive.stats()["requests"].get("put_part", 0) > 0, "an upload attempt")
    assert m.proc is not None
    kill9(m.proc)  # no fusermount: the mount point is left dead, as after a crash
    assert _dead(m.path)  # ENOTCONN
    m.drive.set_faults([])
    pid = 0
    try:
        r = m.panfs("mount", "--config", str(m.config), str(m.path), limit=60)
        assert r.stderr.strip().splitlines() == [
            f"panfs mount: {m.path}: detached the mount left by a panfs daemon that died"
        ]
        pid = _daemon_pid(m.cache_dir)
        assert os.path.ismount(m.path)
        assert (m.path / "waiting.bin").read_bytes() == body
        m.panfs("umount", "--wait", str(m.path), limit=120)
        assert DriveReader(m.drive).read("/waiting.bin") == body
    finally:
        _kill_pid(pid)


def test_umount_detaches_a_dead_mount(mounted: Mounted) -> None:
    m = mounted
    (m.path / "a.txt").write_bytes(b"a")
    m.wait_idle()
    assert m.proc is not None
    kill9(m.proc)
    r = m.panfs("umount", str(m.path), limit=60)
    assert r.stderr.strip().splitlines() == [
        f"panfs umount: {m.path}: its daemon had died; detached the mount"
    ]
    assert not os.path.ismount(m.path)
    assert DriveReader(m.drive).read("/a.txt") == b"a"


def test_the_systemd_unit_survives_kill9(tmp_path: Path, drive: DriveServer) -> None:
    """docs/systemd.md's unit, step by step as systemd runs it (no systemd as PID 1 here):
    ExecStart (foreground), kill -9 of the daemon, Restart=on-failure runs ExecStart again,
    then ExecStop."""
    require_fuse()
    cfg = drive.write_client_config(tmp_path / "c.yaml", tmp_path / "cache")
    mp = tmp_path / "mnt"
    mp.mkdir()
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state"))
    start = [*PANFS, "mount", "--foreground", "--config", str(cfg), str(mp)]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for round_ in range(2):
            with open(tmp_path / f"unit{round_}.log", "wb") as log:
                procs.append(subprocess.Popen(start, stdout=log, stderr=log, env=env))
            wait_for(lambda: os.path.ismount(mp) and not _dead(mp), "the mount", procs[-1])
            (mp / f"r{round_}.txt").write_bytes(b"round %d" % round_)
            if round_ == 0:
                kill9(procs[-1])  # systemd sees a failure: Restart=on-failure
        assert (
            "detached the mount left by a panfs daemon that died"
            in (tmp_path / "unit1.log").read_text()
        )
        r = run_panfs_reaping(["umount", "--wait", str(mp)], procs[-1], limit=120, env=env)
        assert r.returncode == 0, r.stderr  # ExecStop
        assert procs[-1].wait(30) == 0  # a clean stop: systemd does not restart it
        reader = DriveReader(drive)
        assert reader.read("/r1.txt") == b"round 1"
        assert reader.read("/r0.txt") == b"round 0"  # closed before the kill: resumed
    finally:
        subprocess.run(["fusermount3", "-u", "-z", str(mp)], capture_output=True)
        for p in procs:
            stop(p)


def _dead(mp: Path) -> bool:
    try:
        os.stat(mp)
    except OSError as e:
        return e.errno == errno.ENOTCONN
    return False


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    require_fuse()
    mp = tmp_path / "tmpfs"
    mp.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "none", str(mp)], check=True)
    try:
        yield mp
    finally:
        subprocess.run(["umount", "-l", str(mp)], capture_output=True)


def test_a_mount_that_is_not_panfs_is_left_alone(tmpfs: Path, tmp_path: Path) -> None:
    (tmpfs / "keep.txt").write_text("mine")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"cache:\n  dir: {tmp_path / 'cache'}\n")
    for cmd in (["umount", str(tmpfs)], ["umount", "--wait", str(tmpfs)]):
        r = run_panfs(cmd)
        assert r.returncode == 2
        assert r.stderr.strip().splitlines() == [
            f"panfs umount: error: {tmpfs} is a tmpfs mount, not a panfs mount; "
            "panfs umount leaves it alone"
        ]
    r = run_panfs(["mount", "--config", str(cfg), str(tmpfs)])
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"panfs mount: error: {tmpfs} is already mounted (tmpfs, not panfs); unmount it first"
    ]
    assert os.path.ismount(tmpfs)
    assert (tmpfs / "keep.txt").read_text() == "mine"
    r = run_panfs(["umount", str(tmp_path / "cache")])
    assert (r.returncode, r.stderr.strip()) == (
        2,
        f"panfs umount: error: {tmp_path / 'cache'} is not mounted",
    )


def test_symlinked_mount_point_works_with_every_command(mounted: Mounted, tmp_path: Path) -> None:
    m = mounted
    link = tmp_path / "link"
    link.symlink_to(m.path)
    (link / "via-link.txt").write_bytes(b"linked")
    r = m.panfs("status", "--json", str(link))
    assert json.loads(r.stdout)["state_dir"] == str(m.cache_dir)
    m.panfs("umount", "--wait", str(link), limit=120)
    assert not os.path.ismount(m.path)
    assert DriveReader(m.drive).read("/via-link.txt") == b"linked"


def _status(m: Mounted) -> tuple[int, dict[str, object]]:
    r = m.panfs("status", "--json", str(m.path), expect=None)
    assert r.returncode in (0, 3), r.stderr
    data: dict[str, object] = json.loads(r.stdout)
    return r.returncode, data


def test_refused_file_is_retried_after_the_cause_is_fixed(mounted: Mounted) -> None:
    """The drive refuses a file for good (413): status exits 3 and says what to do; once the
    cap is lifted, ``panfs retry`` puts it on the drive, identical; status exits 0."""
    m = mounted
    m.drive.set_faults([{"op": "create", "action": "status", "status": 413,
                         "body": "Payload Too Large", "content_type": "text/plain"}])  # fmt: skip
    body = os.urandom(2 << 20)
    (m.path / "big\nname.bin").write_bytes(body)

    def failed() -> bool:
        code, data = _status(m)
        return code == 3 and any(f["state"] == "failed" for f in data["files"])  # type: ignore[attr-defined]

    wait_for(failed, "the upload to fail for good", m.proc, limit=60)  # type: ignore[arg-type]
    r = m.panfs("status", str(m.path), expect=3)
    failed_lines = [ln for ln in r.stdout.splitlines() if ln.startswith("failed")]
    assert len(failed_lines) == 1
    assert '"/big\\nname.bin"' in failed_lines[0]  # the name cannot start a line of its own
    assert "panfs retry" in r.stdout
    # the drive still refuses: retry queues it, and it fails again (nothing lost)
    m.drive.set_faults([])
    r = m.panfs("retry", str(m.path / "big\nname.bin"))
    assert 'queued again: "/big\\nname.bin"' in r.stdout
    m.wait_idle()
    assert DriveReader(m.drive).read("/big\nname.bin") == body
    code, data = _status(m)
    assert (code, data["files"]) == (0, [])
    assert (m.path / "big\nname.bin").read_bytes() == body
    log = (m.cache_dir / "panfs.log").read_text()
    assert 'WARNING panfs.daemon: upload failed for good: "/big\\nname.bin"' in log
    m.check_logs(allow=(r"upload failed for good: \"/big\\nname.bin\"",))


def test_forget_says_what_is_lost_and_drops_it(mounted: Mounted) -> None:
    m = mounted
    m.drive.set_faults([{"op": "create", "action": "status", "status": 413,
                         "body": "Payload Too Large", "content_type": "text/plain"}])  # fmt: skip
    (m.path / "doomed.bin").write_bytes(b"d" * 1000)
    wait_for(lambda: _status(m)[0] == 3, "the upload to fail", m.proc, limit=60)  # type: ignore[arg-type]
    r = m.panfs("forget", str(m.path / "doomed.bin"), expect=2)  # stdin: not a terminal
    assert r.stdout.startswith('will forget the only copy of "/doomed.bin" (1000 B, failed')
    assert r.stderr.strip() == (
        "panfs forget: error: not asking on a non-terminal: add --yes to forget them"
    )
    assert _status(m)[0] == 3  # nothing dropped without a yes
    r = m.panfs("forget", "--yes", str(m.path / "doomed.bin"))
    assert 'forgotten: "/doomed.bin"' in r.stdout
    assert _status(m)[0] == 0
    # the running mount lets it go too (it was never on the drive)
    wait_for(lambda: "doomed.bin" not in os.listdir(m.path), "the file to leave the mount")
    m.drive.set_faults([])


def test_umount_wait_exits_3_on_a_failed_file_and_retry_works_offline(mounted: Mounted) -> None:
    m = mounted
    m.drive.set_faults([{"op": "create", "action": "status", "status": 413,
                         "body": "Payload Too Large", "content_type": "text/plain"}])  # fmt: skip
    body = os.urandom(1 << 20)
    (m.path / "f.bin").write_bytes(body)
    wait_for(lambda: _status(m)[0] == 3, "the upload to fail", m.proc, limit=60)  # type: ignore[arg-type]
    r = m.panfs("umount", "--wait", str(m.path), expect=3, limit=120)
    lines = r.stderr.splitlines()
    assert lines[0].startswith('panfs umount: failed       "/f.bin"  0 B / 1.0 MiB (0%)')
    assert "panfs retry" in lines[1]
    assert not os.path.ismount(m.path)
    assert m.proc is not None
    assert m.proc.wait(30) == 0  # the daemon ended cleanly
    # no daemon: retry queues it in the journal, the next mount uploads it
    r = m.panfs("retry", "--config", str(m.config), "/f.bin")
    assert r.stdout.splitlines() == [
        'queued again: "/f.bin"',
        "no panfs daemon runs for it: they upload at the next panfs mount",
    ]
    m.drive.set_faults([])
    m.remount()
    m.wait_idle()
    assert DriveReader(m.drive).read("/f.bin") == body


# `panfs retry` / `panfs forget` send SIGUSR1 to whoever holds the state dir's lock: here it
# arrives in the windows where the daemon holds the lock but does not listen for it (start-up,
# before the signal task runs; the unmount, after it returned), as a concurrent retry may
_USR1_OUTSIDE_WINDOW = """
import os, signal, sys
import pyfuse3
from panfs import cli, daemon, migrate

def usr1_first(fn):
    def wrapped(*args, **kw):
        os.kill(os.getpid(), signal.SIGUSR1)
        return fn(*args, **kw)
    return wrapped

migrate.pending = usr1_first(migrate.pending)
daemon.record_mount = usr1_first(daemon.record_mount)
pyfuse3.close = usr1_first(pyfuse3.close)
sys.exit(cli.main(sys.argv[1:]))
"""


def test_sigusr1_outside_the_listening_window_does_not_kill_the_daemon(
    tmp_path: Path, drive: DriveServer
) -> None:
    require_fuse()
    mp = tmp_path / "mnt"
    mp.mkdir()
    cfg = drive.write_client_config(tmp_path / "config.yaml", tmp_path / "cache")
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state"))
    with open(tmp_path / "mount.stderr", "wb") as err:
        proc = subprocess.Popen(
            [PANFS[0], "-P", "-c", _USR1_OUTSIDE_WINDOW, "mount", "--foreground", "--config",
             str(cfg), str(mp)],
            stdout=err, stderr=err, env=env,
        )  # fmt: skip
    try:
        wait_for(lambda: os.path.ismount(mp), "the mount", proc)  # type: ignore[arg-type]
        (mp / "f.txt").write_bytes(b"still here")
        os.kill(proc.pid, signal.SIGUSR1)  # mounted: "look again", nothing more
        assert (mp / "f.txt").read_bytes() == b"still here"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        assert not os.path.ismount(mp)
    finally:
        subprocess.run(["fusermount3", "-u", "-z", str(mp)], capture_output=True)
        stop(proc)
    log = (tmp_path / "cache" / "panfs.log").read_text()
    assert "the journal changed (panfs retry / forget): looking again" in log
    assert "unmounted" in log


def test_umount_wait_does_not_wait_for_a_panfs_upload_beside_the_mount(mounted: Mounted) -> None:
    """A ``panfs upload`` run keeps its own journal in the state dir (status lists its files):
    one killed midway leaves a file pending there, which ``umount --wait`` must not wait for."""
    from panfs.journal import Journal
    from panfs.metadata import open_db

    m = mounted
    (m.path / "f.txt").write_bytes(b"the mount's own")
    src = m.base / "user-file.bin"
    src.write_bytes(b"u" * 1000)
    db = open_db(m.cache_dir / "uploads" / "killed-run" / "journal.db")
    try:
        Journal(db).add(source=str(src), parent_file_id="root", name="user-file.bin",
                        remote_path="/backup/user-file.bin")  # fmt: skip
    finally:
        db.close()
    _, data = _status(m)
    assert {(f["path"], f["state"]) for f in data["files"]} >= {  # type: ignore[attr-defined]
        ("/backup/user-file.bin", "pending")
    }
    m.umount_wait()
    assert not os.path.ismount(m.path)
    assert DriveReader(m.drive).read("/f.txt") == b"the mount's own"
    assert src.read_bytes() == b"u" * 1000  # the user's file is untouched


@pytest.mark.parametrize("how", ["rewrite", "rename-over"])
def test_a_refused_version_a_newer_one_replaced_is_kept_in_the_recovery_folder(
    mounted: Mounted, how: str
) -> None:
    """The drive refused a version for good; then a newer version takes its name (written
    again with O_TRUNC, or an editor's save: a temp file renamed over it). The refused bytes
    are on no drive: they stay readable under ``/.panfs-recovered/`` (read-only; copy out,
    then ``rm``), across a remount; status names them; the newer version uploads."""
    m = mounted
    m.drive.set_faults([{"op": "create", "action": "status", "status": 413, "times": 1,
                         "body": "Payload Too Large", "content_type": "text/plain"}])  # fmt: skip
    old = os.urandom(300_000)
    (m.path / "doc.txt").write_bytes(old)
    wait_for(lambda: _status(m)[0] == 3, "the upload to fail", m.proc, limit=60)  # type: ignore[arg-type]
    new = b"the newer version"
    if how == "rewrite":
        (m.path / "doc.txt").write_bytes(new)
    else:
        (m.path / ".doc.txt.swp").write_bytes(new)
        os.rename(m.path / ".doc.txt.swp", m.path / "doc.txt")
    rec = m.path / ".panfs-recovered"
    # set aside when the newer version is queued (at its last close's RELEASE)
    wait_for(lambda: ".panfs-recovered" in os.listdir(m.path), "the recovery folder")
    (kept,) = os.listdir(rec)
    assert kept.endswith("-doc.txt")
    assert (rec / kept).read_bytes() == old
    assert (m.path / "doc.txt").read_bytes() == new
    with pytest.raises(PermissionError):
        (rec / kept).write_bytes(b"x")
    with pytest.raises(PermissionError):
        (rec / "new.txt").write_bytes(b"x")
    m.wait_idle()
    assert DriveReader(m.drive).read("/doc.txt") == new
    assert (
        DriveReader(m.drive).get("/.panfs-recovered") is None
    )  # the mount's own, never the drive's
    code, data = _status(m)
    assert code == 3
    assert [f["path"] for f in data["files"]] == [f"/.panfs-recovered/{kept}"]  # type: ignore[attr-defined]
    m.close()
    m.remount()
    assert (rec / kept).read_bytes() == old  # still there after a remount
    assert m.cache_files(len(old))
    shutil.copy(rec / kept, m.base / "saved.txt")  # copied out...
    if how == "rewrite":
        os.unlink(rec / kept)  # ...then removed: the cache file goes with it
    else:
        r = m.panfs("retry", str(rec / kept), expect=3)
        assert "copy it out" in r.stderr
        m.panfs("forget", "--yes", str(rec / kept))
    wait_for(lambda: not m.cache_files(len(old)), "its cache file to go")
    assert (m.base / "saved.txt").read_bytes() == old
    wait_for(lambda: ".panfs-recovered" not in os.listdir(m.path), "the empty folder to go")
    assert _status(m)[0] == 0
    m.check_logs(allow=(r"upload failed for good",))
