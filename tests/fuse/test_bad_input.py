"""One line for every bad input, never a traceback; nothing already written is lost."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.drive import DriveReader, DriveServer
from tests.support.procs import PANFS, run_panfs

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def _one_line(r: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    assert r.returncode == code, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def test_config_that_is_not_utf8(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_bytes(b"cache:\n  dir: /tmp/caf\xe9\n")
    (tmp_path / "mp").mkdir()
    for cmd in (["mount", "--config", str(cfg), str(tmp_path / "mp")],
                ["status", "--config", str(cfg)]):  # fmt: skip
        line = _one_line(run_panfs(cmd), 2)
        assert line.endswith(f"{cfg}: not UTF-8 text (byte 0xe9 on line 2); save it as UTF-8")


@pytest.fixture
def upload_cfg(tmp_path: Path, drive: DriveServer) -> Path:
    return drive.write_client_config(tmp_path / "up.yaml", tmp_path / "cache")


def test_fifo_and_device_sources(tmp_path: Path, upload_cfg: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    r = run_panfs(["upload", "--config", str(upload_cfg), str(fifo), "/up"], timeout=30)
    _one_line(r, 2, f"{fifo} is a FIFO: only regular files and folders can be uploaded")
    r = run_panfs(["upload", "--config", str(upload_cfg), "/dev/null", "/up"], timeout=30)
    _one_line(r, 2, "/dev/null is a device: only regular files and folders")


def test_two_sources_with_one_name(tmp_path: Path, upload_cfg: Path, drive: DriveServer) -> None:
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "same.txt").write_text(d)
    r = run_panfs(["upload", "--config", str(upload_cfg), str(tmp_path / "a" / "same.txt"),
                   str(tmp_path / "b" / "same.txt"), "/up"], timeout=30)  # fmt: skip
    _one_line(r, 2, "would both be uploaded as 'same.txt'")
    assert DriveReader(drive).get("/up/same.txt") is None  # nothing half-done


def test_remote_dir_that_is_a_file(tmp_path: Path, upload_cfg: Path, drive: DriveServer) -> None:
    f = tmp_path / "f.txt"
    f.write_text("first")
    assert (
        run_panfs(["upload", "--config", str(upload_cfg), str(f), "/"], timeout=60).returncode == 0
    )
    g = tmp_path / "g.txt"
    g.write_text("second")
    r = run_panfs(["upload", "--config", str(upload_cfg), str(g), "/f.txt/sub"], timeout=60)
    _one_line(r, 2, "/f.txt is a file on the drive, not a folder")
    assert DriveReader(drive).read("/f.txt") == b"first"


def test_json_into_head_ends_quietly_and_uploads_go_on(
    tmp_path: Path, upload_cfg: Path, drive: DriveServer
) -> None:
    srcs = []
    for i in range(3):
        p = tmp_path / f"s{i}.bin"
        p.write_bytes(os.urandom(1 << 20))
        srcs.append(p)
    cmd = " ".join([*PANFS, "upload", "--json", "--config", str(upload_cfg),
                    *map(str, srcs), "/up"])  # fmt: skip
    r = subprocess.run(f"{cmd} 2>{tmp_path / 'err'} | head -n 1", shell=True,
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert len(r.stdout.splitlines()) == 1
    assert (tmp_path / "err").read_text() == ""  # no BrokenPipe traceback, no message
    reader = DriveReader(drive)
    for p in srcs:
        assert reader.read(f"/up/{p.name}") == p.read_bytes()


@pytest.mark.parametrize(("key", "code"), [("client_secret", "InvalidClientSecret"),
                                           ("client_id", "InvalidClientId")])  # fmt: skip
def test_wrong_app_credentials_name_the_key_and_keep_the_token(
    tmp_path: Path, drive: DriveServer, key: str, code: str
) -> None:
    good = drive.client_config(tmp_path / "cache")
    bad = yaml.safe_load(yaml.safe_dump(good))
    bad["remote"][key] = "wrong"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    (tmp_path / "good.yaml").write_text(yaml.safe_dump(good))
    f = tmp_path / "f.txt"
    f.write_text("x")
    r = run_panfs(["upload", "--config", str(tmp_path / "bad.yaml"), str(f), "/up"], timeout=60)
    line = _one_line(r, 2, f"refused remote.{key} ({code}", f"fix remote.{key} in the config")
    assert "refresh_token" not in line.replace("the refresh token was not used", "")
    # the refresh token was not spent: with the key fixed, the same config token works
    r = run_panfs(["upload", "--config", str(tmp_path / "good.yaml"), str(f), "/up"], timeout=60)
    assert r.returncode == 0, r.stderr
    assert DriveReader(drive).read("/up/f.txt") == b"x"


@pytest.fixture
def shared_base() -> Iterator[Path]:
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv")
    base = Path(tempfile.mkdtemp(prefix="panfs-bad-"))
    os.chmod(base, 0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_dirs_of_another_user(shared_base: Path, drive: DriveServer) -> None:
    """root's state dir (0700), used by nobody: status and upload say so in one line."""
    state = shared_base / "state"
    state.mkdir(mode=0o700)
    (state / "journal.db").write_bytes(b"")
    cfg = drive.client_config(shared_base / "cache")
    cfg["state"] = {"dir": str(state)}
    path = shared_base / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    os.chmod(path, 0o644)
    src = shared_base / "f.txt"
    src.write_text("x")
    os.chmod(src, 0o644)
    env = dict(os.environ, HOME=str(shared_base), XDG_STATE_HOME=str(shared_base / "xs"))
    r = subprocess.run([*NOBODY, *PANFS, "status", "--config", str(path)], capture_output=True,
                       text=True, env=env)  # fmt: skip
    _one_line(r, 1, f"cannot read the state dir {state}: permission denied")
    r = subprocess.run([*NOBODY, *PANFS, "upload", "--config", str(path), str(src), "/up"],
                       capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
    _one_line(r, 2, f"state dir {state} is not writable by this user")


def test_no_access_to_dev_fuse(shared_base: Path, drive: DriveServer) -> None:
    """A private mount namespace where /dev/fuse is a root-only file: nobody's mount is one
    line naming the fix, not an exception group."""
    if not shutil.which("unshare"):
        pytest.skip("needs unshare")
    blocker = shared_base / "fuse-blocker"
    blocker.write_bytes(b"")
    os.chmod(blocker, 0o600)
    mp = shared_base / "mp"
    mp.mkdir()
    os.chown(mp, 65534, 65534)
    cfg = shared_base / "c.yaml"
    cfg.write_text(yaml.safe_dump(drive.client_config(shared_base / "nb" / "cache")))
    os.chmod(cfg, 0o644)
    (shared_base / "nb").mkdir()
    os.chown(shared_base / "nb", 65534, 65534)
    inner = " ".join([*NOBODY, *PANFS, "mount", "--config", str(cfg), str(mp)])
    r = subprocess.run(["unshare", "-m", "sh", "-c",
                        f"mount --bind {blocker} /dev/fuse && exec env HOME={shared_base / 'nb'} "
                        f"XDG_STATE_HOME={shared_base / 'nb'} {inner}"],
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    _one_line(r, 1, "no access to /dev/fuse for this user")
    assert not os.path.ismount(mp)
