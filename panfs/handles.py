"""Open file handles: what the kernel's ``fh`` numbers stand for.

Owns: ``Handle`` (the node, the cache file descriptor once there is one, read or
write, and for a writer the version it writes once its first byte made one) and
the table that hands out ``fh`` numbers. Must not: do I/O beyond closing a
descriptor, or decide policy (``versions.py`` and ``vfs.py`` do).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from panfs.errors import NotFoundError
from panfs.inodes import Node


@dataclass
class Handle:
    fh: int
    node: Node
    fd: int  # cache file descriptor; -1 for drive-only bytes, or a writer with no version yet
    write: bool
    append: bool
    # writers: the cache file of the version they write; None until the first write (or
    # O_TRUNC) made one: a writer that never writes creates no version and no upload
    version: str | None = None


class Handles:
    def __init__(self) -> None:
        self._handles: dict[int, Handle] = {}
        self._next = 1

    def add(self, node: Node, fd: int, *, write: bool, append: bool) -> Handle:
        h = Handle(self._next, node, fd, write, append)
        self._next += 1
        self._handles[h.fh] = h
        node.open_handles += 1
        return h

    def __getitem__(self, fh: int) -> Handle:
        h = self._handles.get(fh)
        if h is None:
            raise NotFoundError(f"no open file handle {fh}")
        return h

    def get(self, fh: int) -> Handle | None:
        return self._handles.get(fh)

    def __contains__(self, fh: int) -> bool:
        return fh in self._handles

    def pop(self, fh: int) -> Handle:
        h = self[fh]
        del self._handles[fh]
        return h

    def values(self) -> list[Handle]:
        return list(self._handles.values())

    def of(self, node: Node) -> list[Handle]:
        return [h for h in self._handles.values() if h.node is node]

    @staticmethod
    def close_fd(h: Handle) -> None:
        if h.fd >= 0:
            os.close(h.fd)
            h.fd = -1
