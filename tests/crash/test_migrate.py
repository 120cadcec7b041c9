"""An earlier version's layout (journal, tokens, dirty and clean data all under the cache dir)
moves to the state dir on the first start, atomically and resumably: killed in the middle,
the next start finishes it and nothing is lost."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.drive import DriveReader, DriveServer
from tests.support.procs import PANFS, kill9, require_fuse, run_panfs, wait_for

pytestmark = [pytest.mark.fuse, pytest.mark.crash]


def _journal_rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    import sqlite3

    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


@pytest.mark.parametrize("crash_at", ["migrate_before_commit", "migrate_file:2"])
def test_old_layout_moves_to_the_state_dir_killed_once(
    tmp_path: Path, drive: DriveServer, crash_at: str
) -> None:
    require_fuse()
    state_home, cache_home = tmp_path / "xstate", tmp_path / "xcache"
    env = dict(os.environ, XDG_STATE_HOME=str(state_home), XDG_CACHE_HOME=str(cache_home))
    old_dir, new_dir = cache_home / "panfs", state_home / "panfs"
    mp = tmp_path / "mnt"
    mp.mkdir()
    # the old layout, made by mounting with everything in the cache dir (as before state.dir)
    old_cfg = drive.client_config(old_dir)
    (tmp_path / "old.yaml").write_text(yaml.safe_dump(old_cfg))
    new_cfg = {"remote": old_cfg["remote"]}  # no cache.dir: the XDG default layout
    (tmp_path / "new.yaml").write_text(yaml.safe_dump(new_cfg))
    clean = os.urandom(1 << 20)
    dirty = {f"d{i}.bin": os.urandom((i + 1) << 20) for i in range(3)}
    with open(tmp_path / "old.log", "wb") as log:
        old = subprocess.Popen(
            [*PANFS, "mount", "-f", "--config", str(tmp_path / "old.yaml"), str(mp)],
            stdout=log, stderr=log, env=env,
        )  # fmt: skip
    pid = 0
    try:
        wait_for(lambda: os.path.ismount(mp), "the old mount", old)
        (mp / "clean.bin").write_bytes(clean)
        wait_for(lambda: DriveReader(drive).get("/clean.bin") is not None, "clean.bin uploaded")
        drive.set_faults([{"op": "put_part", "action": "status", "status": 503, "body": "busy"}])
        for name, body in dirty.items():
            (mp / name).write_bytes(body)
        jobs = "SELECT count(*) FROM jobs WHERE state IN ('pending', 'uploading')"
        wait_for(lambda: _journal_rows(old_dir / "journal.db", jobs)[0][0] == 3, "3 queued", old)
        kill9(old)
        subprocess.run(["fusermount3", "-u", "-z", str(mp)], capture_output=True)
        assert (old_dir / "token.json").exists()
        drive.set_faults([])
        # first start with the new layout: killed in the middle of the move
        r = run_panfs(["mount", "-f", "--config", str(tmp_path / "new.yaml"), str(mp)],
                      env=dict(env, PANFS_CRASH_AT=crash_at), timeout=60)  # fmt: skip
        assert r.returncode == -signal.SIGKILL, r.stderr
        assert (new_dir / ".migrating-from").exists()
        # the next start finishes the move and mounts; the waiting files upload
        r = run_panfs(["mount", "--config", str(tmp_path / "new.yaml"), str(mp)], env=env,
                      timeout=60)  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert "moved the journal, tokens and" in r.stderr
        pid = int(json.loads((new_dir / "daemon.lock").read_text())["pid"])
        assert not (new_dir / ".migrating-from").exists()
        assert not (old_dir / "journal.db").exists()
        assert not (old_dir / "token.json").exists()
        assert (new_dir / "token.json").exists()
        assert (mp / "clean.bin").read_bytes() == clean
        for name, body in dirty.items():
            assert (mp / name).read_bytes() == body
        r = run_panfs(["umount", "--wait", str(mp)], env=env, timeout=120)
        assert r.returncode == 0, r.stderr
        reader = DriveReader(drive)
        for name, body in dirty.items():
            assert reader.read(f"/{name}") == body
        # only clean, re-downloadable data is left in the cache dir; the state dir has the rest
        clean_paths = {row[0] for row in _journal_rows(new_dir / "journal.db",
                                                       "SELECT path FROM clean")}  # fmt: skip
        for f in (old_dir / "data").iterdir():
            if not f.name.startswith("."):
                assert str(f) in clean_paths, f"{f} in the cache dir is not clean data"
        assert _journal_rows(new_dir / "journal.db", "SELECT count(*) FROM jobs")[0][0] == 0
    finally:
        subprocess.run(["fusermount3", "-u", "-z", str(mp)], capture_output=True)
        with contextlib.suppress(ProcessLookupError):
            if old.poll() is None:
                old.kill()
            if pid:
                os.kill(pid, signal.SIGKILL)
