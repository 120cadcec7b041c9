"""The inode table: names ↔ inode numbers, kernel lookup counts, per-node attributes.

Owns: ``Node`` (what the kernel sees of one file or folder, plus where its bytes
are: on the drive, in a cache file, or both) and ``InodeTable`` (allocation,
parent/child links, lookup counting and ``forget``). Must not: do I/O, talk to
the drive, or decide policy (``vfs.py`` does).
"""

from __future__ import annotations

import collections
import stat
from dataclasses import dataclass, field

ROOT_INO = 1


@dataclass(eq=False)
class Node:
    ino: int
    parent: int
    name: str
    is_dir: bool
    file_id: str | None = None  # the drive's id; None for a file not yet on the drive
    size: int = 0
    mtime_ns: int = 0
    ctime_ns: int = 0
    atime_ns: int = 0
    mode: int = 0
    uid: int = 0
    gid: int = 0
    lookups: int = 0
    # local bytes: a version being written or waiting for upload (dirty), or clean cached bytes
    cache_path: str | None = None
    dirty: bool = False
    job_id: int | None = None  # journal job uploading the dirty version
    writers: int = 0  # open handles writing the current version
    version_open: bool = False  # cache_path is a version still open (or being published)
    open_handles: int = 0
    children: dict[str, int] | None = None  # folders: loaded listing
    listed_at: float = -1.0
    linked: bool = True  # False once unlinked: lives until the last handle and lookup go
    extra: dict[str, str] = field(default_factory=dict)
    # a symbolic link: stored on the drive as a small file named name + suffix
    link_suffix: str = ""
    cookie: int = 0  # readdir position in its folder: stable while the folder changes
    data_gen: int = 0  # bumped when the bytes change behind the kernel (another drive file)
    entries_gen: int = 0  # folders: bumped whenever an entry is added, moved, removed or lands
    kernel_gen: int = -1  # data_gen when the kernel last opened it (its page cache is of it)

    @property
    def is_link(self) -> bool:
        return bool(self.link_suffix)

    @property
    def drive_name(self) -> str:
        return self.name + self.link_suffix

    @property
    def st_mode(self) -> int:
        if self.is_link:
            return stat.S_IFLNK | 0o777
        kind = stat.S_IFDIR if self.is_dir else stat.S_IFREG
        perm = self.mode & 0o7777 if self.mode else (0o755 if self.is_dir else 0o644)
        return kind | perm


class InodeTable:
    """Every node the kernel may hold a reference to. Sync only: no ``await`` inside."""

    def __init__(self, uid: int, gid: int, now_ns: int) -> None:
        root = Node(ROOT_INO, ROOT_INO, "", True, file_id="root", uid=uid, gid=gid)
        root.mtime_ns = root.ctime_ns = root.atime_ns = now_ns
        root.children = {}
        self._nodes: dict[int, Node] = {ROOT_INO: root}
        self._next = ROOT_INO + 1
        self._cookie = 0
        # cache file of a local version → the node it is a version of (until it settles)
        self._versions: dict[str, Node] = {}
        # uploads landed per drive folder (file id), node or no node in the table
        self._landings: collections.Counter[str] = collections.Counter()

    def __getitem__(self, ino: int) -> Node:
        return self._nodes[ino]

    def get(self, ino: int) -> Node | None:
        return self._nodes.get(ino)

    def note_version(self, cache_path: str, node: Node) -> None:
        self._versions[cache_path] = node

    def version_owner(self, cache_path: str) -> Node | None:
        """The node ``cache_path`` is (or was) a version of, while that version is unsettled."""
        return self._versions.get(cache_path)

    def unsettled(self) -> list[tuple[str, Node]]:
        """Every (cache file, node) of a local version not yet settled."""
        return list(self._versions.items())

    def settle_version(self, cache_path: str) -> None:
        self._versions.pop(cache_path, None)

    def add(self, parent: Node, name: str, is_dir: bool, **attrs: object) -> Node:
        node = Node(self._next, parent.ino, name, is_dir, **attrs)  # type: ignore[arg-type]
        self._next += 1
        if is_dir:
            node.children = None
        self._nodes[node.ino] = node
        assert parent.children is not None
        parent.children[name] = node.ino
        node.cookie = self._new_cookie()
        parent.entries_gen += 1
        return node

    def entry_changed(self, node: Node) -> None:
        """What stands for ``node`` changed (its upload landed): a listing of its folder
        that was under way when it happened is stale for it."""
        parent = self._nodes.get(node.parent)
        if parent is not None:
            parent.entries_gen += 1

    def landed_in(self, folder_file_id: str) -> None:
        """An upload of that folder landed and its job went (the journal no longer shows
        it): a listing under way since before is stale for it, even when no node of it is
        in the table (none was looked up since a restart)."""
        self._landings[folder_file_id] += 1

    def landings(self, folder_file_id: str) -> int:
        return self._landings[folder_file_id]

    def _new_cookie(self) -> int:
        self._cookie += 1
        return self._cookie

    def holding(self, file_id: str) -> Node | None:
        """A node that stands for drive file ``file_id``, if any (a scan of every node)."""
        return next((n for n in self._nodes.values() if n.file_id == file_id), None)

    def alive(self, node: Node) -> bool:
        """Still in the table (linked, or referenced by a lookup or a handle)."""
        return self._nodes.get(node.ino) is node

    def subfolders(self, node: Node) -> int:
        if not node.children:
            return 0
        return sum(1 for i in node.children.values() if (c := self._nodes.get(i)) and c.is_dir)

    def child(self, parent: Node, name: str) -> Node | None:
        if parent.children is None:
            return None
        ino = parent.children.get(name)
        return self._nodes.get(ino) if ino is not None else None

    def detach(self, node: Node) -> None:
        """Take ``node`` out of its folder; it lives on while referenced."""
        parent = self._nodes.get(node.parent)
        siblings = parent.children if parent is not None else None
        if siblings is not None and siblings.get(node.name) == node.ino:
            del siblings[node.name]
        if parent is not None:
            parent.entries_gen += 1
        node.linked = False
        self._maybe_drop(node)

    def move(self, node: Node, new_parent: Node, new_name: str) -> None:
        old_parent = self._nodes[node.parent]
        if old_parent.children is not None and old_parent.children.get(node.name) == node.ino:
            del old_parent.children[node.name]
        assert new_parent.children is not None
        node.parent, node.name = new_parent.ino, new_name
        new_parent.children[new_name] = node.ino
        node.cookie = self._new_cookie()
        old_parent.entries_gen += 1
        new_parent.entries_gen += 1

    def forget(self, ino: int, n: int) -> None:
        node = self._nodes.get(ino)
        if node is None or ino == ROOT_INO:
            return
        node.lookups = max(0, node.lookups - n)
        self._maybe_drop(node)

    def release_handle(self, node: Node) -> None:
        node.open_handles -= 1
        self._maybe_drop(node)

    def _maybe_drop(self, node: Node) -> None:
        if not node.linked and node.lookups == 0 and node.open_handles == 0:
            self._nodes.pop(node.ino, None)

    def path(self, node: Node) -> str:
        """The node's path on the drive (a link's name carries its suffix)."""
        parts: list[str] = []
        while node.ino != ROOT_INO:
            parts.append(node.drive_name)
            node = self._nodes[node.parent]
        return "/" + "/".join(reversed(parts))
