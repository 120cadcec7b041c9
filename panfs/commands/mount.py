"""``panfs mount``: check the mount point and config, then run the daemon.

Owns: argument parsing (including ``mount.fuse3``'s ``SOURCE MOUNTPOINT -o OPTS``
form, where SOURCE is the config file), the checks that give one-line reasons
(mount point missing, not a folder, not empty, already mounted, no /dev/fuse,
bad config), logging to ``CACHE_DIR/panfs.log``, and daemonizing only once the
mount is live: the parent exits 0, or non-zero with the daemon's reason.
Must not: hold mount logic (``panfs.daemon``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import trio

from panfs import config
from panfs.errors import LocalError, PanfsError, UsageError

HELP = "mount the drive at MOUNTPOINT (daemonizes once the mount is live)"

# mount(8)/fstab options that mean nothing to us and are dropped silently
_IGNORED = {
    "rw",
    "dev",
    "nodev",
    "suid",
    "nosuid",
    "exec",
    "noexec",
    "auto",
    "noauto",
    "user",
    "users",
    "nouser",
    "defaults",
    "async",
    "sync",
    "atime",
    "noatime",
    "relatime",
    "_netdev",
    "nofail",
}


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
        help="comma-separated mount options (allow_other, ro, config=FILE)",
    )


def _options(raw: list[str]) -> tuple[list[str], dict[str, str]]:
    flags: list[str] = []
    values: dict[str, str] = {}
    for chunk in raw:
        for opt in filter(None, chunk.split(",")):
            if "=" in opt:
                k, v = opt.split("=", 1)
                values[k] = v
            elif opt not in _IGNORED:
                flags.append(opt)
    unknown = [f for f in flags if f not in ("allow_other", "ro", "foreground")]
    if unknown:
        raise UsageError(
            f"unknown mount option {unknown[0]!r}; known: allow_other, ro, config=FILE"
        )
    return flags, values


def check_mountpoint(mp: Path) -> None:
    if not mp.exists():
        raise LocalError(f"mount point {mp} does not exist; create it with: mkdir -p {mp}")
    if not mp.is_dir():
        raise LocalError(f"mount point {mp} is not a folder")
    if os.path.ismount(mp):
        raise LocalError(f"{mp} is already mounted; unmount it first (panfs umount {mp})")
    if any(mp.iterdir()):
        raise LocalError(f"mount point {mp} is not empty; use an empty folder")
    if not os.path.exists("/dev/fuse"):
        raise LocalError("no /dev/fuse: install fuse3 and load the fuse module (modprobe fuse)")


def _setup_logging(log_path: Path, foreground: bool) -> None:
    handlers: list[logging.Handler] = [logging.FileHandler(log_path)]
    if foreground:
        handlers.append(logging.StreamHandler(sys.stderr))
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)


def run(args: argparse.Namespace) -> int:
    from panfs import daemon  # heavy (pyfuse3, the whole stack): only when mounting

    flags, values = _options(args.options)
    cfg_path = args.config or values.get("config") or args.source
    cfg = config.load(cfg_path)
    mp = args.mountpoint.expanduser().absolute()
    check_mountpoint(mp)
    cache_dir = cfg.cache_dir
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LocalError(
            f"cannot create cache dir {cache_dir}: {e.strerror}; set cache.dir"
        ) from None
    options = daemon.fuse_options(cfg, flags)
    log_path = cache_dir / "panfs.log"
    if args.foreground or "foreground" in flags:
        _setup_logging(log_path, True)
        trio.run(lambda: daemon.run_mount(cfg, mp, options=options, ready=lambda: None))
        return 0
    return _daemonize(cfg, mp, options, log_path)


def _daemonize(cfg: config.Config, mp: Path, options: set[str], log_path: Path) -> int:
    from panfs import daemon

    r, w = os.pipe()
    pid = os.fork()
    if pid:
        os.close(w)
        with os.fdopen(r, "rb") as pipe:
            msg = pipe.read().decode(errors="replace").strip()
        if msg == "ok":
            return 0
        os.waitpid(pid, 0)
        print(
            f"panfs mount: error: {msg or 'the daemon died; see ' + str(log_path)}", file=sys.stderr
        )
        return 1
    os.close(r)
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    _setup_logging(log_path, False)
    status = 1

    def ready() -> None:
        nonlocal w
        os.write(w, b"ok")
        os.close(w)
        w = -1

    try:
        trio.run(lambda: daemon.run_mount(cfg, mp, options=options, ready=ready))
        status = 0
    except PanfsError as e:
        logging.getLogger("panfs").error("mount failed: %s", e)
        if w >= 0:
            os.write(w, str(e).encode())
    except BaseException as e:  # the daemon's last word, whatever it was
        logging.getLogger("panfs").exception("daemon died")
        if w >= 0:
            os.write(w, f"{type(e).__name__}: {e}".encode())
    finally:
        if w >= 0:
            os.close(w)
    os._exit(status)
