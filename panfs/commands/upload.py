"""``panfs upload SRC... REMOTE_DIR``: upload without mounting; resumable after a kill.

Owns: turning sources into journal jobs (reusing the job of an earlier, killed
run of the same command so it continues where the server is), creating the
remote folders, running the uploader until every job is done or failed, and
showing progress (rich bars, or JSON lines with ``--json``). Each distinct command
(its sources and REMOTE_DIR) keeps its own journal in ``CACHE_DIR/uploads/KEY/``,
locked while it runs, so uploads run beside each other and beside a mount of the
same config (they share the token file in ``CACHE_DIR``); the same command run
again finds its journal and continues. Must not: hold upload logic
(``upload_session.py``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sqlite3
import stat
import sys
import time
from pathlib import Path
from typing import Any

from panfs import config, exitcodes
from panfs.errors import LocalError, RemoteNotFoundError, UsageError
from panfs.logs import quote

HELP = "upload files to a drive folder (resumable: run it again after a kill)"
EXAMPLE = """examples:
  panfs upload big.iso /backup                 one file into /backup (created if missing)
  panfs upload photos/ notes.txt /2026         a folder (recursively) and a file
  panfs upload --json big.iso /backup | jq .   one JSON object per line
exit code 3: some files failed (each is named, with the reason); fix it and run the same again"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="SRC... REMOTE_DIR")
    parser.add_argument("--config", type=Path)
    parser.add_argument("--part-size", help="part size, e.g. 16MiB (overrides upload.part_size)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")


def _sources(paths: list[str]) -> list[tuple[Path, str]]:
    """(local file, path relative to REMOTE_DIR) for files and folders (recursively)."""
    out: list[tuple[Path, str]] = []
    for raw in paths:
        p = Path(raw).expanduser().absolute()
        try:
            st = p.stat()
        except FileNotFoundError:
            raise UsageError(f"{raw}: no such file or folder") from None
        except OSError as e:
            raise UsageError(f"{raw}: cannot read it: {e.strerror}") from None
        if stat.S_ISDIR(st.st_mode):
            for f in sorted(p.rglob("*")):
                if f.is_file():
                    out.append((f, f"{p.name}/{f.relative_to(p).as_posix()}"))
        elif stat.S_ISREG(st.st_mode):
            if not os.access(p, os.R_OK):
                raise UsageError(f"{raw}: not readable by this user")
            out.append((p, p.name))
        else:
            kind = (
                "a FIFO" if stat.S_ISFIFO(st.st_mode)
                else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
                else "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file"
            )  # fmt: skip
            raise UsageError(
                f"{raw} is {kind}: only regular files and folders can be uploaded "
                "(copy it to a file first)"
            )
    seen: dict[str, Path] = {}
    for src, rel in out:
        if rel in seen:
            raise UsageError(
                f"{seen[rel]} and {src} would both be uploaded as {rel!r}; "
                "rename one or upload them separately to different folders"
            )
        seen[rel] = src
    return out


def run(args: argparse.Namespace) -> int:
    if len(args.paths) < 2:
        raise UsageError(
            "give at least one SRC and the REMOTE_DIR, e.g. panfs upload big.iso /backup"
        )
    cfg = config.load(args.config)
    if args.part_size:
        values = dict(cfg.values)
        try:
            values["upload.part_size"] = config.SCHEMA["upload.part_size"].parse(args.part_size)
        except ValueError as e:
            raise UsageError(f"--part-size: {e}") from None
        cfg = config.Config(cfg.path, values)
    if cfg.embedded:
        raise UsageError(
            "no account configured: write remote: in the config (see config.example.yaml)"
        )
    remote_dir = args.paths[-1]
    if not remote_dir.startswith("/"):
        raise UsageError(
            f"REMOTE_DIR must be an absolute drive path like /backup, got {remote_dir!r}"
        )
    sources = _sources(args.paths[:-1])
    import trio  # here, not at the top: every panfs command imports this module

    return trio.run(_main, cfg, sources, remote_dir.rstrip("/") or "/", args.json)


def upload_dir(cache_dir: Path, sources: list[tuple[Path, str]], remote_dir: str) -> Path:
    """This command's own state dir: the same sources and REMOTE_DIR find it again."""
    key = "\0".join([remote_dir, *sorted(str(src) for src, _ in sources)])
    return cache_dir / "uploads" / hashlib.sha1(key.encode()).hexdigest()[:16]


async def _folder(client: Any, path: str, cache: dict[str, str]) -> str:
    """The file_id of drive folder ``path``, creating missing folders (mkdir -p)."""
    if path in ("", "/"):
        return "root"
    if path in cache:
        return cache[path]
    parent, _, name = path.rpartition("/")
    pid = await _folder(client, parent, cache)
    res = await client.create_folder(pid, name, check_name_mode="refuse")
    if res.type not in ("", "folder"):
        raise UsageError(f"{path} is a file on the drive, not a folder; choose another REMOTE_DIR")
    cache[path] = res.file_id
    return str(res.file_id)


async def _main(
    cfg: config.Config, sources: list[tuple[Path, str]], remote_dir: str, as_json: bool
) -> int:
    import trio

    from panfs import lock, migrate
    from panfs.journal import ACTIVE, Journal, identity
    from panfs.metadata import open_db
    from panfs.paths import Layout
    from panfs.progress import Bars, make_progress
    from panfs.remote import settings as remote_settings
    from panfs.remote.client import open_client
    from panfs.uploader import UploadSettings, open_uploader

    layout = Layout.of(cfg)
    layout.make()
    if migrate.pending(layout):
        migrate.run(layout)
    state_dir = layout.state_dir
    # this command's own journal (a mount and other uploads may run beside it); the
    # token file in the state dir is shared with them under its own lock
    work = upload_dir(state_dir, sources, remote_dir)
    work.mkdir(parents=True, exist_ok=True)
    with lock.acquire(work, "(panfs upload)"):
        try:
            db = open_db(work / "journal.db")
        except sqlite3.Error as e:
            raise LocalError(f"cannot open the journal {work / 'journal.db'} ({e}); "
                             "run as its owner or set state.dir") from None  # fmt: skip
        journal = Journal(db)
        async with open_client(remote_settings.from_config(cfg), state_dir) as client:
            folders: dict[str, str] = {}
            job_ids: list[int] = []
            existing = {(j.source, j.remote_path): j for j in journal.jobs()}
            for src, rel in sources:
                remote_path = f"{remote_dir.rstrip('/')}/{rel}"
                parent_path, _, name = remote_path.rpartition("/")
                old = existing.get((str(src), remote_path))
                if old is not None and old.state in ACTIVE:
                    job_ids.append(old.id)  # a killed run: continue where the server is
                    continue
                if old is not None and old.state == "done":
                    ident = await trio.to_thread.run_sync(identity, str(src))
                    if ident == old.identity:
                        job_ids.append(old.id)  # already uploaded, unchanged
                        continue
                parent_id = await _folder(client, parent_path, folders)
                try:
                    prior = await client.get_by_path(remote_path)
                    replaces = prior.file_id if not prior.is_dir else None
                except RemoteNotFoundError:
                    replaces = None
                job, _ = journal.add(
                    source=str(src),
                    parent_file_id=parent_id,
                    name=name,
                    remote_path=remote_path,
                    replaces_file_id=replaces,
                )
                job_ids.append(job.id)
            settings = UploadSettings.from_config(cfg)
            async with open_uploader(client, journal, settings) as uploader:
                await _watch(journal, uploader, job_ids, as_json, make_progress, Bars)
        failed = [j for j in (journal.get(i) for i in job_ids) if j and j.state != "done"]
        db.close()
    for j in failed:
        print(f"panfs upload: {quote(j.remote_path)}: {j.state}: {j.error or ''}", file=sys.stderr)
    if failed:
        print("panfs upload: fix what is named above, then run the same command again "
              "(what is on the drive already is not sent again)", file=sys.stderr)  # fmt: skip
    return exitcodes.ATTENTION if failed else exitcodes.OK


def _print(text: str) -> None:
    """One line on stdout; if its reader went away (``| head``), the uploads go on silently."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


async def _watch(
    journal: Any,
    uploader: Any,
    job_ids: list[int],
    as_json: bool,
    make_progress: Any,
    bars_cls: Any,
) -> None:
    import trio

    uploader.wake()

    def finished() -> bool:
        return all(
            (j := journal.get(i)) is not None and j.state in ("done", "failed") for i in job_ids
        )

    if as_json or not sys.stderr.isatty():
        last: dict[int, tuple[str, int]] = {}
        while True:
            for i in job_ids:
                j = journal.get(i)
                key = (j.state, j.sent_bytes)
                if last.get(i) != key:
                    last[i] = key
                    if as_json:
                        _print(
                            json.dumps(
                                {
                                    "path": j.remote_path,
                                    "state": j.state,
                                    "sent": j.sent_bytes,
                                    "size": j.size,
                                    "error": j.error,
                                    "time": time.time(),
                                }
                            )
                        )
            if finished():
                return
            await trio.sleep(0.2)
    with make_progress() as progress:
        bars = bars_cls(progress)
        while True:
            jobs = [journal.get(i) for i in job_ids]
            for j in jobs:
                live = uploader.live(j.id)
                sent = live.sent if live else j.sent_bytes
                note = "" if j.state in ("uploading", "done") else j.state
                if j.error and j.state != "done":
                    note = f"retrying: {j.error[:50]}"
                bars.update(j.id, os.path.basename(j.remote_path), sent, j.size, note)
            bars.overall(sum(j.sent_bytes for j in jobs), sum(j.size for j in jobs))
            if finished():
                return
            await trio.sleep(0.2)
