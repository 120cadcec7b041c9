"""``durability.fsync_all``: a batch of SYNCFS_AT files or more is made durable by one
``syncfs`` (no fsync each); a syncfs that reports an error falls back to an fsync each, so
the failures are still known file by file; fewer files get an fsync each."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from panfs import durability


@pytest.fixture
def fds(tmp_path: Path) -> Iterator[list[int]]:
    opened = []
    for i in range(durability.SYNCFS_AT + 2):
        fd = os.open(tmp_path / f"f{i}", os.O_CREAT | os.O_RDWR, 0o600)
        os.write(fd, b"x" * (1000 + i))
        opened.append(fd)
    try:
        yield opened
    finally:
        for fd in opened:
            os.close(fd)


@pytest.fixture(autouse=True)
def local_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every file system here is one syncfs covers (whatever the test machine's /tmp is):
    ``test_syncfs_only_where_it_covers_the_files`` checks the real lookup."""
    monkeypatch.setattr(durability, "_covers", {})
    monkeypatch.setattr(durability.mounts, "fstypes", lambda dev: {"ext4"})


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[int]]:
    """Counts syncfs and fsync calls (both still do the real thing)."""
    seen: dict[str, list[int]] = {"syncfs": [], "fsync": []}
    real_syncfs, real_fsync = durability._syncfs, os.fsync
    assert real_syncfs is not None, "this Linux has syncfs"

    def syncfs(fd: int) -> int:
        seen["syncfs"].append(fd)
        return real_syncfs(fd)

    def fsync(fd: int) -> None:
        seen["fsync"].append(fd)
        real_fsync(fd)

    monkeypatch.setattr(durability, "_syncfs", syncfs)
    monkeypatch.setattr(durability.os, "fsync", fsync)
    return seen


def test_a_batch_is_one_syncfs(fds: list[int], calls: dict[str, list[int]]) -> None:
    assert durability.fsync_all(fds) == {}
    assert len(calls["syncfs"]) == 1
    assert calls["fsync"] == []


def test_a_few_files_are_fsynced_each(fds: list[int], calls: dict[str, list[int]]) -> None:
    few = fds[: durability.SYNCFS_AT - 1]
    assert durability.fsync_all(few) == {}
    assert calls["syncfs"] == []
    assert calls["fsync"] == few


def test_a_failing_syncfs_finds_the_failing_files_one_by_one(
    fds: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = fds[2]
    fsynced: list[int] = []

    def fsync(fd: int) -> None:
        fsynced.append(fd)
        if fd == bad:
            raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(durability, "_syncfs", lambda fd: -1)
    monkeypatch.setattr(durability.os, "fsync", fsync)
    errors = durability.fsync_all(fds)
    assert list(errors) == [bad]
    assert errors[bad].errno == errno.EIO
    assert fsynced == fds  # every file, not only up to the failing one


def test_one_syncfs_per_file_system(
    fds: list[int], monkeypatch: pytest.MonkeyPatch, calls: dict[str, list[int]]
) -> None:
    """Files on two file systems (st_dev faked for half of them): a syncfs each, and a
    failure on one of them fsyncs only that one's files."""
    real_fstat = os.fstat
    other = set(fds[::2])

    class Stat:
        """The file's own stat, on another device when it is one of ``other``."""

        def __init__(self, fd: int) -> None:
            self.real = real_fstat(fd)
            self.st_dev = -7 if fd in other else self.real.st_dev

        def __getattr__(self, name: str) -> object:
            return getattr(self.real, name)

    monkeypatch.setattr(durability.os, "fstat", Stat)
    assert durability.fsync_all(fds) == {}
    assert len(calls["syncfs"]) == 2
    assert calls["fsync"] == []
    counted = calls["syncfs"][:]
    calls["syncfs"].clear()

    def failing_on_other(fd: int) -> int:
        calls["syncfs"].append(fd)
        return -1 if fd in other else 0

    monkeypatch.setattr(durability, "_syncfs", failing_on_other)
    assert durability.fsync_all(fds) == {}
    assert sorted(calls["fsync"]) == sorted(other)
    assert len(counted) == 2


def test_syncfs_only_where_it_covers_the_files(
    fds: list[int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a file system whose syncfs may not reach the disk (FUSE, NFS) each file is
    fsynced; the lookup finds this test's own file system in the mount table."""
    monkeypatch.undo()  # the real mount table, the real syncfs and fsync
    assert durability.mounts.fstypes(os.stat(tmp_path).st_dev)  # found by st_dev
    monkeypatch.setattr(durability, "_covers", {})
    monkeypatch.setattr(durability.mounts, "fstypes", lambda dev: {"fuse.sshfs"})
    fsynced: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        fsynced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(durability.os, "fsync", fsync)
    monkeypatch.setattr(durability, "_syncfs", lambda fd: pytest.fail("syncfs on FUSE"))
    assert durability.fsync_all(fds) == {}
    assert fsynced == fds
