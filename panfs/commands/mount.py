"""``panfs mount``: check the mount point and config, then run the daemon.

Owns: argument parsing (including ``mount.fuse3``'s ``SOURCE MOUNTPOINT -o OPTS``
form, where SOURCE is the config file), the checks that give one-line reasons
(mount point missing, not a folder, not empty, mounted by something else, no
access to /dev/fuse, bad config, state or cache dir inside the mount point),
detaching a mount left by a panfs daemon that died (one line says so), moving
an earlier version's layout to the state dir, the log (``--log-file``,
``--log-level``, ``-v``/``-q``; its place printed once), and daemonizing only
once the mount is live: the parent exits 0, or non-zero with the daemon's reason.
Must not: hold mount logic (``panfs.daemon``).
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import sys
from pathlib import Path

from panfs import config, logs, mounts
from panfs.errors import LocalError, PanfsError, UsageError
from panfs.mount_options import KNOWN, MountOptions, parse
from panfs.paths import Layout

HELP = "mount the drive at MOUNTPOINT (daemonizes once the mount is live)"
EXAMPLE = """examples:
  panfs mount ~/pan                            the embedded drive, or the default config's
  panfs mount --config /etc/panfs/pan.yaml /mnt/pan -o allow_other,uid=1000,gid=1000,umask=022
  panfs mount -f -v ~/pan                      stay attached, log at DEBUG to stderr too"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mountpoint", type=Path)
    parser.add_argument("--config", type=Path, help="config file (default: XDG config dir)")
    parser.add_argument("--source", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("-f", "--foreground", action="store_true", help="stay attached")
    parser.add_argument(
        "-o",
        dest="options",
        action="append",
        default=[],
        metavar="OPTS",
        help=f"comma-separated mount options: {KNOWN}",
    )
    parser.add_argument(
        "--log-file", type=Path, help="the daemon's log (default STATE_DIR/panfs.log, log.file)"
    )
    parser.add_argument(
        "--log-level", choices=config.LOG_LEVELS, type=str.upper, help="overrides log.level"
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv)")
    parser.add_argument("-q", "--quiet", action="count", default=0, help="log less (-qq)")


def check_mountpoint(mp: Path) -> None:
    """One line for every reason ``mp`` cannot take a mount; a mount left by a panfs
    daemon that died is detached here (and said so)."""
    entry = mounts.find(mp)
    if entry is not None:
        if not entry.is_panfs:
            raise UsageError(
                f"{mp} is already mounted ({entry.fstype}, not panfs); unmount it first"
            )
        if not mounts.is_dead(mp):
            raise UsageError(f"{mp} is already mounted; unmount it first (panfs umount {mp})")
        mounts.unmount(mp, lazy=True)
        print(f"panfs mount: {mp}: detached the mount left by a panfs daemon that died",
              file=sys.stderr)  # fmt: skip
    if not mp.exists():
        raise UsageError(f"mount point {mp} does not exist; create it with: mkdir -p {mp}")
    if not mp.is_dir():
        raise UsageError(f"mount point {mp} is not a folder")
    if any(mp.iterdir()):
        raise UsageError(f"mount point {mp} is not empty; use an empty folder")
    check_fuse()


def check_fuse() -> None:
    if not os.path.exists("/dev/fuse"):
        raise LocalError("no /dev/fuse: install fuse3 and load the fuse module (modprobe fuse)")
    try:
        fd = os.open("/dev/fuse", os.O_RDWR)
    except OSError as e:
        if e.errno in (errno.EACCES, errno.EPERM):
            raise LocalError(
                "no access to /dev/fuse for this user; add the user to the fuse group "
                "or allow it (chmod 0666 /dev/fuse is the usual default)"
            ) from None
        raise LocalError(f"cannot open /dev/fuse: {e.strerror}") from None
    os.close(fd)


def run(args: argparse.Namespace) -> int:
    import trio  # here, not at the top: every panfs command imports this module

    from panfs import daemon, migrate

    mopts = parse(args.options)
    cfg_path = args.config or mopts.config or args.source
    cfg = config.load(cfg_path)
    mp = mounts.resolve(args.mountpoint)
    layout = Layout.of(cfg)
    if args.log_file:
        layout = Layout(layout.state_dir, layout.cache_dir, args.log_file.expanduser().absolute())
    layout.refuse_inside(mp)
    check_mountpoint(mp)
    layout.make()
    # the migration holds the state dir's lock: a panfs retry / forget meanwhile sends its
    # holder SIGUSR1, which must not kill it (the daemon listens for it once mounted)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    if migrate.pending(layout):
        n = migrate.run(layout)
        print(f"panfs mount: moved the journal, tokens and {n} file(s) not yet uploaded to "
              f"{layout.state_dir} (only clean data stays in {layout.cache_dir})",
              file=sys.stderr)  # fmt: skip
    lvl = logs.level(cfg.log.level, args.verbose, args.quiet, args.log_level)
    if args.foreground or mopts.foreground:
        _setup_logging(cfg, layout, lvl, True)
        logging.getLogger("panfs").info("log: %s", layout.log_file)
        try:
            trio.run(lambda: daemon.run_mount(cfg, layout, mp, ready=lambda: None, mopts=mopts))
        except BaseExceptionGroup as group:
            msg = _fuse_failure(group)
            if msg is None:
                raise
            raise LocalError(msg) from None
        return 0
    return _daemonize(cfg, layout, mp, mopts, lvl)


def _setup_logging(cfg: config.Config, layout: Layout, lvl: int, foreground: bool) -> None:
    try:
        logs.setup(layout.log_file, lvl, max_size=cfg.log.max_size, backups=cfg.log.backups,
                   foreground=foreground)  # fmt: skip
    except OSError as e:
        raise LocalError(f"cannot write the log {layout.log_file}: {e.strerror}; "
                         "set log.file or --log-file") from None  # fmt: skip


def _fuse_failure(e: BaseException) -> str | None:
    """A libfuse failure at mount time, in one line (pyfuse3 raises it inside a group)."""
    exc: BaseException = e
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, RuntimeError) and "fuse_session_mount" in str(exc):
        return (
            "the kernel refused the mount (fuse_session_mount failed): check access to "
            "/dev/fuse, and user_allow_other in /etc/fuse.conf for allow_other"
        )
    return None


def _daemonize(
    cfg: config.Config,
    layout: Layout,
    mp: Path,
    mopts: MountOptions,
    lvl: int,
) -> int:
    import trio

    from panfs import daemon

    r, w = os.pipe()
    pid = os.fork()
    if pid:
        os.close(w)
        with os.fdopen(r, "rb") as pipe:
            msg = pipe.read().decode(errors="replace").strip()
        if msg == "ok":
            print(f"panfs mount: {mp} is mounted; log: {layout.log_file}")
            return 0
        os.waitpid(pid, 0)
        print(f"panfs mount: error: {msg or f'the daemon died; see {layout.log_file}'}",
              file=sys.stderr)  # fmt: skip
        return 1
    os.close(r)
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    status = 1

    def ready() -> None:
        nonlocal w
        os.write(w, b"ok")
        os.close(w)
        w = -1

    try:
        _setup_logging(cfg, layout, lvl, False)
        trio.run(lambda: daemon.run_mount(cfg, layout, mp, ready=ready, mopts=mopts))
        status = 0
    except PanfsError as e:
        logging.getLogger("panfs").error("mount failed: %s", e)
        if w >= 0:
            os.write(w, str(e).encode())
    except BaseException as e:  # the daemon's last word, whatever it was
        logging.getLogger("panfs").exception("daemon died")
        if w >= 0:
            os.write(w, (_fuse_failure(e) or f"{type(e).__name__}: {e}").encode())
    finally:
        if w >= 0:
            os.close(w)
    os._exit(status)
