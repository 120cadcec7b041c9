"""The two file systems a model sequence runs against.

``CoreFS``: ``panfs.vfs.Core`` in process, called the way the kernel and ``fs.py``
call it (a lookup before every name operation, a lookup counted per readdir entry,
flush then release on close); kill = drop the core like a SIGKILL, remount = a clean
stop; both build a new core on the same cache dir. ``MountFS``: plain system calls
on a real mount, kill = SIGKILL of the daemon.
"""

# The mount is another process: blocking system calls on it from a trio task are fine here.
# ruff: noqa: ASYNC230
from __future__ import annotations

import collections
import contextlib
import errno
import os
import random
import signal
import threading
import time
from pathlib import Path

from panfs.errors import PanfsError
from panfs.inodes import ROOT_INO, Node
from tests.support.core import CoreRig, open_core
from tests.support.drive import DriveServer

CHUNK = 128 * 1024  # the kernel's largest FUSE write/read


class CoreFS:
    def __init__(self, drive: DriveServer, cache_dir: Path, base: str, **sections: dict) -> None:  # type: ignore[type-arg]
        self.drive, self.cache_dir, self.base = drive, cache_dir, base
        self.sections = sections
        self.stack: contextlib.AsyncExitStack | None = None
        self.rig: CoreRig | None = None
        self.looked: collections.Counter[int] = collections.Counter()

    # -- life ------------------------------------------------------------------
    async def start(self) -> None:
        self.stack = contextlib.AsyncExitStack()
        self.rig = await self.stack.enter_async_context(
            open_core(self.drive, self.cache_dir, **self.sections)
        )
        self.looked.clear()

    async def stop(self, crash: bool = False) -> None:
        assert self.stack is not None
        if crash and self.rig is not None:
            self.rig.crash()
        await self.stack.aclose()
        self.stack = self.rig = None

    async def kill(self) -> None:
        await self.stop(crash=True)
        await self.start()

    async def remount(self) -> None:
        await self.stop()
        await self.start()

    async def wait_idle(self) -> None:
        assert self.rig is not None
        await self.rig.wait_idle()

    @property
    def core(self):  # type: ignore[no-untyped-def]
        assert self.rig is not None
        return self.rig.core

    async def end_of_step(self, rng: random.Random) -> None:
        if rng.random() < 0.5:  # the kernel drops cached entries now and then
            self.core.forget(list(self.looked.items()))
            self.looked.clear()

    # -- helpers ---------------------------------------------------------------
    async def _lookup(self, parent: int, name: str) -> Node:
        try:
            node = await self.core.lookup(parent, name)
        except PanfsError as e:
            raise OSError(e.errno, str(e)) from None
        self.looked[node.ino] += 1
        return node

    async def _resolve(self, p: str) -> Node:
        node = self.core.node(ROOT_INO)
        for part in [self.base, *[x for x in p.split("/") if x]]:
            node = await self._lookup(node.ino, part)
        return node

    async def _call(self, coro):  # type: ignore[no-untyped-def]
        try:
            return await coro
        except PanfsError as e:
            raise OSError(e.errno, str(e)) from None

    async def _close(self, fh: int) -> None:
        await self._call(self.core.flush(fh))
        await self._call(self.core.release(fh, grouped=True))  # as fs.py: nobody waits

    async def _write_all(self, fh: int, off: int, data: bytes) -> None:
        for i in range(0, len(data), CHUNK):
            await self._call(self.core.write(fh, off + i, data[i : i + CHUNK]))

    async def _open_for_write(self, p: str, data: bytes) -> int:
        parent = await self._resolve(os.path.dirname(p))
        name = os.path.basename(p)
        try:
            node = await self._lookup(parent.ino, name)
        except OSError as e:
            if e.errno != errno.ENOENT:
                raise
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
            h, node = await self._call(
                self.core.create(parent.ino, name, 0o644, flags, os.getuid(), os.getgid())
            )
            self.looked[node.ino] += 1
        else:
            h = await self._call(self.core.open(node.ino, os.O_WRONLY | os.O_TRUNC))
        await self._write_all(h.fh, 0, data)
        return int(h.fh)

    # -- operations ------------------------------------------------------------
    async def write(self, p: str, data: bytes) -> None:
        await self._close(await self._open_for_write(p, data))

    async def closekill(self, p: str, data: bytes) -> None:
        """close() returned (FLUSH handled), the daemon dies before RELEASE."""
        fh = await self._open_for_write(p, data)
        await self._call(self.core.flush(fh))
        await self.kill()

    async def twowriters(self, p: str, x: bytes, off: int, y: bytes, first: bool) -> None:
        """Writer A truncates and writes x; writer B opens the same file and writes y at
        off; they close in either order (one version, both writes in it)."""
        a = await self._open_for_write(p, x)
        node = await self._resolve(p)
        b = await self._call(self.core.open(node.ino, os.O_RDWR))
        await self._write_all(b.fh, off, y)
        for fh in (a, b.fh) if first else (b.fh, a):
            await self._close(fh)

    async def append(self, p: str, data: bytes) -> None:
        node = await self._resolve(p)
        h = await self._call(self.core.open(node.ino, os.O_WRONLY | os.O_APPEND))
        await self._write_all(h.fh, self.core.node(node.ino).size, data)
        await self._close(h.fh)

    async def patch(self, p: str, off: int, data: bytes) -> None:
        node = await self._resolve(p)
        h = await self._call(self.core.open(node.ino, os.O_RDWR))
        await self._write_all(h.fh, off, data)
        await self._close(h.fh)

    async def reopen(self, p: str) -> None:
        node = await self._resolve(p)
        h = await self._call(self.core.open(node.ino, os.O_WRONLY))
        await self._close(h.fh)

    async def truncate(self, p: str, n: int) -> None:
        node = await self._resolve(p)
        await self._call(self.core.setattr(node.ino, size=n))

    async def rename(self, a: str, b: str) -> None:
        pa = await self._resolve(os.path.dirname(a))
        pb = await self._resolve(os.path.dirname(b))
        await self._lookup(pa.ino, os.path.basename(a))
        with contextlib.suppress(FileNotFoundError):
            await self._lookup(pb.ino, os.path.basename(b))
        await self._call(
            self.core.rename(pa.ino, os.path.basename(a), pb.ino, os.path.basename(b), 0)
        )

    async def unlink(self, p: str) -> None:
        parent = await self._resolve(os.path.dirname(p))
        await self._lookup(parent.ino, os.path.basename(p))
        await self._call(self.core.unlink(parent.ino, os.path.basename(p)))

    async def mkdir(self, p: str) -> None:
        parent = await self._resolve(os.path.dirname(p))
        with contextlib.suppress(FileNotFoundError):
            await self._lookup(parent.ino, os.path.basename(p))
        node = await self._call(
            self.core.mkdir(parent.ino, os.path.basename(p), 0o755, os.getuid(), os.getgid())
        )
        self.looked[node.ino] += 1

    async def rmdir(self, p: str) -> None:
        parent = await self._resolve(os.path.dirname(p))
        await self._lookup(parent.ino, os.path.basename(p))
        await self._call(self.core.rmdir(parent.ino, os.path.basename(p)))

    async def read(self, p: str) -> bytes:
        node = await self._resolve(p)
        h = await self._call(self.core.open(node.ino, os.O_RDONLY))
        out = bytearray()
        try:
            while True:
                chunk = await self._call(self.core.read(h.fh, len(out), CHUNK))
                if not chunk:
                    break
                out += chunk
        finally:
            await self._close(h.fh)
        return bytes(out)

    async def listdir(self, p: str) -> list[str]:
        node = await self._resolve(p)
        nodes = await self._call(self.core.readdir(node.ino))
        for n in nodes:
            self.core.remember(n)  # as fs.readdir does for each entry the kernel took
            self.looked[n.ino] += 1
        return [n.name for n in nodes]


# a step of a mount sequence that takes this long is hung (a hang guard, not a speed limit:
# steps take seconds, faults and retries included)
HUNG = 300.0


class MountFS:
    """A real mount (``tests.fuse.conftest.Mounted``); the sequence works in ``base``.

    A watchdog thread (until ``close``): a step that takes ``HUNG`` seconds gets the
    daemon's task tree (SIGUSR2, printed from its log), then the daemon is SIGKILLed so
    that the blocked system call returns and the sequence fails where it hung."""

    def __init__(self, mounted, base: str) -> None:  # type: ignore[no-untyped-def]
        self.m = mounted
        self.base = base
        self._step_at = time.monotonic()
        self._closed = threading.Event()
        self._watchdog = threading.Thread(target=self._watch, daemon=True)
        self._watchdog.start()

    def close(self) -> None:
        self._closed.set()
        self._watchdog.join()

    def _watch(self) -> None:
        while not self._closed.wait(1.0):
            if time.monotonic() - self._step_at < HUNG or self.m.proc is None:
                continue
            log = self.m.cache_dir / "panfs.log"
            seen = log.stat().st_size if log.exists() else 0
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.m.proc.pid, signal.SIGUSR2)
            time.sleep(2.0)
            with contextlib.suppress(OSError), open(log, "rb") as f:
                f.seek(seen)
                dump = f.read().decode(errors="replace")
                print(f"{self.base}: a step hung {HUNG:.0f} s; the daemon's tasks:\n{dump}")
            self.m.kill()
            self._step_at = time.monotonic()

    def _p(self, p: str) -> str:
        return str(self.m.path / self.base / p) if p else str(self.m.path / self.base)

    async def end_of_step(self, rng: random.Random) -> None:
        self._step_at = time.monotonic()

    async def write(self, p: str, data: bytes) -> None:
        with open(self._p(p), "wb") as f:
            f.write(data)

    async def closekill(self, p: str, data: bytes) -> None:
        await self.write(p, data)
        await self.kill()

    async def twowriters(self, p: str, x: bytes, off: int, y: bytes, first: bool) -> None:
        a = os.open(self._p(p), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(a, x)
            b = os.open(self._p(p), os.O_RDWR)
            os.pwrite(b, y, off)
        except BaseException:
            os.close(a)
            raise
        for fd in (a, b) if first else (b, a):
            os.close(fd)

    async def append(self, p: str, data: bytes) -> None:
        with open(self._p(p), "ab") as f:
            f.write(data)

    async def patch(self, p: str, off: int, data: bytes) -> None:
        fd = os.open(self._p(p), os.O_RDWR)
        try:
            os.pwrite(fd, data, off)
        finally:
            os.close(fd)

    async def reopen(self, p: str) -> None:
        os.close(os.open(self._p(p), os.O_WRONLY))

    async def truncate(self, p: str, n: int) -> None:
        os.truncate(self._p(p), n)

    async def rename(self, a: str, b: str) -> None:
        os.rename(self._p(a), self._p(b))

    async def unlink(self, p: str) -> None:
        os.unlink(self._p(p))

    async def mkdir(self, p: str) -> None:
        os.mkdir(self._p(p))

    async def rmdir(self, p: str) -> None:
        os.rmdir(self._p(p))

    async def read(self, p: str) -> bytes:
        with open(self._p(p), "rb") as f:
            return f.read()

    async def listdir(self, p: str) -> list[str]:
        return os.listdir(self._p(p))

    async def kill(self) -> None:
        self.m.kill()
        self.m.remount()

    async def remount(self) -> None:
        self.m.close()
        self.m.remount()

    def umount_wait(self) -> None:
        self.m.umount_wait()
