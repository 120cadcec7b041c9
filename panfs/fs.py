"""FUSE glue: unpack pyfuse3 arguments, call the core, pack attributes, map errors.

Owns: the ``pyfuse3.Operations`` subclass and the ONE place where errors become
``FUSEError``: a ``PanfsError`` becomes its ``errno``; anything else is logged
with its traceback and becomes ``EIO`` (an escaping exception would end the
mount). Must not: hold policy, SQL, HTTP or paths: everything goes to ``vfs.Core``.
"""

from __future__ import annotations

import errno
import functools
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, ParamSpec, TypeVar

import pyfuse3

from panfs.errors import PanfsError
from panfs.inodes import Node
from panfs.vfs import Core

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

ATTR_TIMEOUT = 1.0


def _errors(fn: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except pyfuse3.FUSEError:
            raise
        except PanfsError as e:
            # "no such entry" is routine (shells and file managers probe names): DEBUG
            lvl = logging.DEBUG if e.errno == errno.ENOENT else logging.INFO
            log.log(lvl, "%s: %s (errno %d)", fn.__name__, e, e.errno)
            raise pyfuse3.FUSEError(e.errno) from None
        except Exception:
            log.exception("unexpected error in %s", fn.__name__)
            raise pyfuse3.FUSEError(errno.EIO) from None

    return wrapper


def _name(raw: bytes) -> str:
    """Names on the drive are UTF-8: any other bytes are refused with EILSEQ."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise pyfuse3.FUSEError(errno.EILSEQ) from None


class Operations(pyfuse3.Operations):
    enable_writeback_cache = True
    supports_dot_lookup = False
    umask = 0  # mount option umask=: bits taken away from every mode shown

    def __init__(self, core: Core) -> None:
        super().__init__()
        self.core = core

    def _attr(self, node: Node) -> pyfuse3.EntryAttributes:
        a = pyfuse3.EntryAttributes()
        a.st_ino = node.ino
        a.generation = 0
        a.entry_timeout = ATTR_TIMEOUT
        a.attr_timeout = ATTR_TIMEOUT
        a.st_mode = node.st_mode & ~self.umask
        a.st_nlink = self.core.nlink(node)
        a.st_uid = node.uid
        a.st_gid = node.gid
        a.st_rdev = 0
        a.st_size = node.size
        a.st_blksize = 1 << 17
        a.st_blocks = (node.size + 511) // 512
        a.st_atime_ns = node.atime_ns
        a.st_mtime_ns = node.mtime_ns
        a.st_ctime_ns = node.ctime_ns
        return a

    @_errors
    async def lookup(self, parent_inode: int, name: bytes, ctx: Any) -> pyfuse3.EntryAttributes:
        return self._attr(await self.core.lookup(parent_inode, _name(name)))

    @_errors
    async def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
        self.core.forget(list(inode_list))

    @_errors
    async def getattr(self, inode: int, ctx: Any) -> pyfuse3.EntryAttributes:
        return self._attr(self.core.node(inode))

    @_errors
    async def setattr(
        self, inode: int, attr: Any, fields: Any, fh: int | None, ctx: Any
    ) -> pyfuse3.EntryAttributes:
        node = await self.core.setattr(
            inode,
            size=attr.st_size if fields.update_size else None,
            mode=attr.st_mode if fields.update_mode else None,
            uid=attr.st_uid if fields.update_uid else None,
            gid=attr.st_gid if fields.update_gid else None,
            atime_ns=attr.st_atime_ns if fields.update_atime else None,
            mtime_ns=attr.st_mtime_ns if fields.update_mtime else None,
            fh=fh,
        )
        return self._attr(node)

    @_errors
    async def mkdir(
        self, parent_inode: int, name: bytes, mode: int, ctx: Any
    ) -> pyfuse3.EntryAttributes:
        node = await self.core.mkdir(parent_inode, _name(name), mode, ctx.uid, ctx.gid)
        return self._attr(node)

    @_errors
    async def rmdir(self, parent_inode: int, name: bytes, ctx: Any) -> None:
        await self.core.rmdir(parent_inode, _name(name))

    @_errors
    async def unlink(self, parent_inode: int, name: bytes, ctx: Any) -> None:
        await self.core.unlink(parent_inode, _name(name))

    @_errors
    async def rename(
        self,
        parent_inode_old: int,
        name_old: bytes,
        parent_inode_new: int,
        name_new: bytes,
        flags: int,
        ctx: Any,
    ) -> None:
        if flags & ~pyfuse3.RENAME_NOREPLACE:
            raise pyfuse3.FUSEError(errno.EINVAL)  # EXCHANGE, WHITEOUT: not on a drive
        noreplace = 1 if flags & pyfuse3.RENAME_NOREPLACE else 0
        await self.core.rename(
            parent_inode_old, _name(name_old), parent_inode_new, _name(name_new), noreplace
        )

    @_errors
    async def link(self, inode: int, new_parent_inode: int, new_name: bytes, ctx: Any) -> Any:
        raise pyfuse3.FUSEError(errno.EPERM)  # the drive has no hard links

    @_errors
    async def symlink(
        self, parent_inode: int, name: bytes, target: bytes, ctx: Any
    ) -> pyfuse3.EntryAttributes:
        node = await self.core.symlink(parent_inode, _name(name), target, ctx.uid, ctx.gid)
        return self._attr(node)

    @_errors
    async def readlink(self, inode: int, ctx: Any) -> bytes:
        return await self.core.readlink(inode)

    @_errors
    async def mknod(
        self, parent_inode: int, name: bytes, mode: int, rdev: int, ctx: Any
    ) -> pyfuse3.EntryAttributes:
        node = await self.core.mknod(parent_inode, _name(name), mode, ctx.uid, ctx.gid)
        return self._attr(node)

    @_errors
    async def open(self, inode: int, flags: int, ctx: Any) -> pyfuse3.FileInfo:
        h = await self.core.open(inode, flags)
        return pyfuse3.FileInfo(fh=h.fh, keep_cache=self.core.keep_cache(h))

    @_errors
    async def create(
        self, parent_inode: int, name: bytes, mode: int, flags: int, ctx: Any
    ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        h, node = await self.core.create(parent_inode, _name(name), mode, flags, ctx.uid, ctx.gid)
        return pyfuse3.FileInfo(fh=h.fh), self._attr(node)

    @_errors
    async def read(self, fh: int, off: int, size: int) -> bytes | memoryview:  # type: ignore[override]
        return await self.core.read(fh, off, size)  # pyfuse3 replies with any buffer

    @_errors
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        return await self.core.write(fh, off, buf)

    @_errors
    async def flush(self, fh: int) -> None:
        await self.core.flush(fh)

    @_errors
    async def fsync(self, fh: int, datasync: bool) -> None:
        await self.core.fsync(fh)

    @_errors
    async def release(self, fh: int) -> None:
        await self.core.release(fh, grouped=True)  # close() does not wait for RELEASE

    @_errors
    async def opendir(self, inode: int, ctx: Any) -> int:
        self.core.node(inode)
        return inode

    @_errors
    async def readdir(self, fh: int, start_id: int, token: Any) -> None:
        for node in await self.core.readdir(fh, start_id):
            if not pyfuse3.readdir_reply(token, node.name.encode(), self._attr(node), node.cookie):
                return
            self.core.remember(node)

    @_errors
    async def statfs(self, ctx: Any) -> pyfuse3.StatvfsData:
        total, used = await self.core.statfs()
        s = pyfuse3.StatvfsData()
        s.f_bsize = s.f_frsize = 4096
        s.f_blocks = total // 4096
        s.f_bfree = s.f_bavail = max(0, total - used) // 4096
        s.f_files = 1 << 20
        s.f_ffree = s.f_favail = 1 << 20
        s.f_namemax = 1024
        return s
