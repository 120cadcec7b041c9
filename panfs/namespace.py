"""Names and listings: what the kernel sees in a folder, and the one place lookups are counted.

Owns: a folder's listing (the drive's ``openFile/list``, reused for ``list_ttl``)
merged with local versions (local wins), the rules that keep the merge honest
(a drive file the journal knows to be superseded, doomed, or not yet at its final
name is never shown; of several drive files of one name the one the node already
stands for wins, else the newest by ``updated_at``, said once in the log), the
translation of link files (``name`` + suffix) into symbolic links, stable readdir
cookies, folder times, and lookup counting (``remember``). Must not: write
versions (``versions.py``), talk to the drive beyond listing, or know FUSE.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime

from panfs.attrs import AttrStore, drive_key, version_key
from panfs.errors import NameTooLongError, NotDirError, NotFoundError
from panfs.inodes import ROOT_INO, InodeTable, Node
from panfs.journal import RECOVERED_ID, RECOVERED_NAME, Job, Journal
from panfs.remote.client import MOVE_PREFIX, OpenApiClient
from panfs.remote.models import RemoteFile

log = logging.getLogger(__name__)

MAX_NAME = 1024
LIST_TRIES = 3  # listings of a busy folder asked again before one is merged as stale


def parse_time(s: str) -> int:
    if not s:
        return 0
    try:
        return int(datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() * 1e9)
    except ValueError:
        return 0


def check_name(name: str) -> None:
    if len(name.encode()) > MAX_NAME:
        raise NameTooLongError(f"name over {MAX_NAME} bytes: {name[:40]}…")


class Namespace:
    def __init__(
        self,
        *,
        client: OpenApiClient,
        journal: Journal,
        inodes: InodeTable,
        attrs: AttrStore,
        list_ttl: float,
        uid: int,
        gid: int,
        link_suffix: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.journal = journal
        self.inodes = inodes
        self.attrs = attrs
        self.list_ttl = list_ttl
        self.uid, self.gid = uid, gid
        self.link_suffix = link_suffix
        self.clock = clock
        self._said: set[tuple[str, str]] = set()  # duplicate names already logged

    # -- nodes -----------------------------------------------------------------------------
    def node(self, ino: int) -> Node:
        node = self.inodes.get(ino)
        if node is None:
            raise NotFoundError(f"stale inode {ino}")
        return node

    def root(self) -> Node:
        return self.inodes[ROOT_INO]

    @staticmethod
    def remember(node: Node) -> Node:
        """The kernel got an entry for ``node`` (lookup, create, mkdir, readdirplus): the
        one place lookup counts go up (``forget`` brings them down)."""
        node.lookups += 1
        return node

    def forget(self, pairs: list[tuple[int, int]]) -> None:
        for ino, n in pairs:
            self.inodes.forget(ino, n)

    def remote_path(self, parent: Node, name: str) -> str:
        base = self.inodes.path(parent)
        return (base.rstrip("/") + "/" + name) if name else base

    @staticmethod
    def touch_dir(folder: Node) -> None:
        """A folder's entries changed: its mtime and ctime move (never backwards)."""
        now = time.time_ns()
        folder.mtime_ns = max(now, folder.mtime_ns)
        folder.ctime_ns = max(now, folder.ctime_ns)

    def recovery_changed(self) -> None:
        """Versions went to the recovery folder: it and the root are listed afresh."""
        root = self.root()
        root.listed_at = float("-inf")
        node = self.inodes.child(root, RECOVERED_NAME)
        if node is not None:
            node.listed_at = float("-inf")

    # -- listings ----------------------------------------------------------------------------
    async def listing(self, folder: Node, force: bool = False) -> dict[str, int]:
        if not folder.is_dir:
            raise NotDirError(f"not a folder: {self.inodes.path(folder)}")
        fresh = folder.children is not None and self.clock() - folder.listed_at < self.list_ttl
        if fresh and not force:
            assert folder.children is not None
            return folder.children
        assert folder.file_id is not None
        if folder.file_id == RECOVERED_ID:  # the recovery folder: the journal alone
            self._merge(folder, [])
            folder.listed_at = self.clock()
            assert folder.children is not None
            return folder.children
        for attempt in range(LIST_TRIES):
            gen = (folder.entries_gen, self.inodes.landings(folder.file_id))
            asked = time.monotonic()
            items = await self.client.list_folder(folder.file_id)
            if (folder.entries_gen, self.inodes.landings(folder.file_id)) == gen:
                self._merge(folder, items, asked=asked)
                break
            # an entry changed while the drive answered (a rename, an upload landing): the
            # answer may predate it, so it must not remove or revive names; ask again
            if attempt == LIST_TRIES - 1:
                self._merge(folder, items, stale=True, asked=asked)
        folder.listed_at = self.clock()
        assert folder.children is not None
        return folder.children

    async def child(self, parent: Node, name: str) -> Node:
        check_name(name)
        ino = (await self.listing(parent)).get(name)
        if ino is None:
            raise NotFoundError(f"no such entry: {self.remote_path(parent, name)}")
        return self.inodes[ino]

    async def find(self, parent: Node, name: str) -> Node | None:
        check_name(name)
        node = self.inodes.child(parent, name)
        if node is None and name in await self.listing(parent):
            node = self.inodes.child(parent, name)
        return node

    async def lookup(self, parent_ino: int, name: str) -> Node:
        return self.remember(await self.child(self.node(parent_ino), name))

    async def entries(self, ino: int, after: int) -> list[Node]:
        """Entries of a folder past readdir cookie ``after``, in cookie order: an entry
        added between two calls comes at the end, one removed is simply not there."""
        folder = self.node(ino)
        children = await self.listing(folder)
        nodes = [n for i in children.values() if (n := self.inodes.get(i)) is not None]
        return sorted((n for n in nodes if n.cookie > after), key=lambda n: n.cookie)

    def _local_name(self, item: RemoteFile) -> tuple[str, str]:
        """(name in the mount, link suffix) of a drive item."""
        s = self.link_suffix
        if s and not item.is_dir and item.name.endswith(s) and len(item.name) > len(s):
            return item.name[: -len(s)], s
        return item.name, ""

    def _choose(self, folder: Node, name: str, group: list[RemoteFile]) -> RemoteFile:
        """Several drive files for one name: the one the node stands for, else the newest."""
        if len(group) == 1:
            return group[0]
        node = self.inodes.child(folder, name)
        for item in group:
            if node is not None and item.file_id == node.file_id:
                return item
        best = max(group, key=lambda i: (parse_time(i.updated_at), i.file_id))
        key = (folder.file_id or "", name)
        if key not in self._said:
            self._said.add(key)
            log.warning(
                "the drive holds %d files named %r in %s; showing the newest (%s)",
                len(group), name, self.inodes.path(folder), best.file_id,
            )  # fmt: skip
        return best

    def _merge(
        self, folder: Node, items: list[RemoteFile], stale: bool = False, asked: float = 0.0
    ) -> None:
        """Fold a drive listing into ``folder``; local versions win. A ``stale`` listing
        (entries changed while it was answered) only adds names the folder lacks and
        removes none. ``asked``: when the listing was asked for (monotonic): a file of
        ours hidden then (being moved, or doomed) stays hidden in it, though the journal
        no longer hides it (its move or trash done meanwhile). No await."""
        if folder.children is None:
            folder.children = {}
        assert folder.file_id is not None
        hidden = self.journal.hidden_file_ids()
        if asked:
            hidden |= self.journal.unhidden_since(asked)
        lost = self.journal.lost_creates(folder.file_id)
        known = self.journal.file_ids() if lost else set()
        groups: dict[str, list[RemoteFile]] = {}
        links: dict[str, list[RemoteFile]] = {}
        for item in items:
            if item.file_id in hidden or item.name == MOVE_PREFIX + item.file_id:
                continue  # (the other: one of our moves past a name clash, half done)
            if item.name in lost and self._lost(item, lost[item.name], known):
                continue  # maybe a lost create's file, bound for another name or superseded
            name, suffix = self._local_name(item)
            (links if suffix else groups).setdefault(name, []).append(item)
        for name, group in links.items():
            if name in groups:
                continue  # a real file of the same name wins over a link file
            groups[name] = group
        seen: set[str] = set()
        for name, group in groups.items():
            item = self._choose(folder, name, group)
            _, suffix = self._local_name(item)
            seen.add(name)
            node = self.inodes.child(folder, name)
            if node is None and stale and self._known_elsewhere(item.file_id):
                continue  # moved away while the listing was answered
            if node is None:
                node = self.inodes.add(
                    folder, name, item.is_dir, uid=self.uid, gid=self.gid, link_suffix=suffix
                )
            elif node.is_dir != item.is_dir or node.link_suffix != suffix:
                if node.dirty or node.writers or node.is_dir:
                    continue  # local and remote disagree on the kind: keep the local view
                node.link_suffix = suffix
            self._adopt_remote(node, item)
        aside = folder.ino == ROOT_INO and RECOVERED_NAME not in groups
        if aside and self.journal.local_jobs(RECOVERED_ID):
            seen.add(RECOVERED_NAME)  # versions set aside when a newer one took the name
            if self.inodes.child(folder, RECOVERED_NAME) is None:
                self.inodes.add(folder, RECOVERED_NAME, True, file_id=RECOVERED_ID,
                                mode=0o555, uid=self.uid, gid=self.gid)  # fmt: skip
        # local versions of this folder that the listing cannot show yet (interrupted and
        # failed ones too, at the size they reached: finish them or remove them)
        for job in self.journal.local_jobs(folder.file_id):
            name, suffix = self._local_name_of_job(job)
            node = self.inodes.child(folder, name)
            if node is None:
                node = self.inodes.add(
                    folder, name, False, uid=self.uid, gid=self.gid, link_suffix=suffix
                )
            newer = node.job_id is not None and node.job_id > job.id
            if node.is_dir or newer or node.writers or node.version_open:
                seen.add(name)
                continue
            self._adopt_job(node, job)
            seen.add(name)
        if stale:
            return
        for name, ino in list(folder.children.items()):
            node = self.inodes[ino]
            if name not in seen and not node.dirty and not node.writers:
                self.inodes.detach(node)

    def _lost(self, item: RemoteFile, lost: list[tuple[float, int]], known: set[str]) -> bool:
        """Maybe the file a lost create made: of that version's size, made since its create
        was sent, and no job or node stands for it (a newer version's own file of that name
        does; after a restart, one that landed and is done is known by neither, but its
        size tells it apart from a lost empty or rapid create of other bytes)."""
        if item.file_id in known or self.inodes.holding(item.file_id) is not None:
            return False
        return any(item.size == size and item.made_since(sent) for sent, size in lost)

    def _known_elsewhere(self, file_id: str) -> bool:
        """A node already stands for this drive file (a scan: stale listings are rare)."""
        return self.inodes.holding(file_id) is not None

    def _local_name_of_job(self, job: Job) -> tuple[str, str]:
        s = self.link_suffix
        if s and job.name.endswith(s) and len(job.name) > len(s):
            return job.name[: -len(s)], s
        return job.name, ""

    def _adopt_remote(self, node: Node, item: RemoteFile) -> None:
        if node.dirty or node.writers:
            return  # local changes win over the drive's view
        if node.file_id != item.file_id or not node.mtime_ns:
            if node.file_id is not None and node.file_id != item.file_id:
                node.data_gen += 1  # other bytes now: the kernel must not keep its pages
            node.file_id = item.file_id
            t = parse_time(item.updated_at)
            node.mtime_ns = node.atime_ns = t or time.time_ns()
            node.ctime_ns = max(node.ctime_ns, node.mtime_ns)
            self._apply_attrs(node, drive_key(item.file_id))
        if not node.is_dir:
            if node.size != item.size:
                node.data_gen += 1
            node.size = item.size

    def _adopt_job(self, node: Node, job: Job) -> None:
        node.job_id, node.cache_path, node.dirty, node.size = job.id, job.source, True, job.size
        self.inodes.note_version(job.source, node)
        if not node.mtime_ns:
            node.mtime_ns = node.ctime_ns = node.atime_ns = time.time_ns()
            self._apply_attrs(node, version_key(job.source))

    def _apply_attrs(self, node: Node, key: str) -> None:
        a = self.attrs.get(key)
        if a is not None:
            node.mode, node.uid, node.gid = a.mode, a.uid, a.gid
            node.atime_ns, node.mtime_ns = a.atime_ns, a.mtime_ns
