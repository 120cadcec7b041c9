"""Bad input gets one line naming the problem and the fix, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.procs import run_panfs


@pytest.mark.parametrize(
    ("setup", "words"),
    [
        ("missing", "does not exist; create it with: mkdir -p"),
        ("not_empty", "is not empty"),
        ("file", "is not a folder"),
    ],
)
def test_mount_point_problems(tmp_path: Path, setup: str, words: str) -> None:
    mp = tmp_path / "mp"
    if setup == "not_empty":
        mp.mkdir()
        (mp / "x").write_text("x")
    elif setup == "file":
        mp.write_text("x")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"cache:\n  dir: {tmp_path / 'cache'}\n")
    r = run_panfs(["mount", "--config", str(cfg), str(mp)])
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1
    assert words in lines[0]


def test_bad_config_key_is_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("upload:\n  part_sise: 8MiB\n")
    (tmp_path / "mp").mkdir()
    r = run_panfs(["mount", "--config", str(cfg), str(tmp_path / "mp")])
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"panfs mount: error: {cfg}: unknown key 'upload.part_sise'; did you mean upload.part_size?"
    ]


def test_upload_usage_errors(tmp_path: Path) -> None:
    r = run_panfs(["upload", str(tmp_path / "nope"), "/x", "--config", str(tmp_path / "c.yaml")])
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_unusable_cache_dir_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"cache:\n  dir: {tmp_path / 'file' / 'sub'}\n")
    (tmp_path / "mp").mkdir()
    r = run_panfs(["mount", "--config", str(cfg), str(tmp_path / "mp")])
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"panfs mount: error: cannot create cache dir {tmp_path / 'file' / 'sub'}: "
        "Not a directory; set cache.dir"
    ]


def test_missing_refresh_token_is_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "remote:\n  endpoint: http://127.0.0.1:9\n  client_id: x\n"
        f"cache:\n  dir: {tmp_path / 'cache'}\n"
    )
    (tmp_path / "mp").mkdir()
    r = run_panfs(["mount", "--config", str(cfg), str(tmp_path / "mp")])
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "remote.refresh_token is missing" in lines[0]
