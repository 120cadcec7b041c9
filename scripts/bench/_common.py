"""Bench helpers shared by the scripts in scripts/bench: processes (start, wait for a mount,
stop by PID with a kill when SIGTERM is not enough), peak RSS, timing, test files, the panfs
client config, and the two mounts the benches measure (panfs, and rclone as the outside
reference). Must not: measure or print figures (each bench owns its rounds and its output),
nor start the drive server (``_drive.Drive`` does).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

import yaml


class DriveAccount(Protocol):
    """What a client config needs of a drive server (``_drive.Drive`` is one)."""

    url: str
    account: dict[str, Any]

    def token(self) -> str: ...


MiB = 1 << 20
QUIET: dict[str, Any] = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
# the client's pacer off too: the server runs with --no-rate-limits, and the benches measure
# panfs, not the limiter (rate 0 = no limit)
NO_RATE_LIMITS = {"list": 0, "getDownloadUrl": 0, "*": 0}


@contextlib.contextmanager
def bench_tmp() -> Iterator[Path]:
    """A scratch folder, removed afterwards: under $BENCH_DIR if set (a disk with room)."""
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        yield Path(tmp)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def peak_rss(pid: int) -> int:
    """VmHWM: the peak RSS of the process image (ru_maxrss would include the pre-exec fork);
    0 once the process has exited. Raises OSError when there is no such process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def poll_peak_rss(proc: subprocess.Popen[Any], every: float = 0.05) -> int:
    """Sample ``proc``'s peak RSS every ``every`` seconds until it exits; the highest seen."""
    peak = 0
    while proc.poll() is None:
        with contextlib.suppress(OSError):  # gone between poll() and the read
            peak = max(peak, peak_rss(proc.pid))
        time.sleep(every)
    return peak


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run(*cmd: str) -> float:
    """Run ``cmd`` (it must succeed); its seconds."""
    return timed(lambda: subprocess.run(cmd, check=True))


def wait_until(pred: Callable[[], bool], limit: float = 1800, every: float = 0.25) -> None:
    t0 = time.perf_counter()
    while not pred():
        if time.perf_counter() - t0 > limit:
            raise SystemExit(f"gave up waiting after {limit:.0f}s")
        time.sleep(every)


def wait_mount(path: Path, proc: subprocess.Popen[Any], limit: float = 15) -> None:
    """Until ``path`` is a mount point; a clear exit if ``proc`` dies or it takes too long."""
    t0 = time.perf_counter()
    while not os.path.ismount(path):
        if proc.poll() is not None:
            raise SystemExit(f"mount of {path} failed ({proc.returncode})")
        if time.perf_counter() - t0 > limit:
            raise SystemExit(f"mount of {path} did not come up in {limit:.0f}s")
        time.sleep(0.05)


def stop(*procs: subprocess.Popen[Any] | None, wait: float = 30, sig: int = signal.SIGTERM) -> None:
    """Send ``sig`` to each process, wait up to ``wait`` seconds each, SIGKILL what is still
    there."""
    live = [p for p in procs if p is not None]
    for p in live:
        if p.poll() is None:
            p.send_signal(sig)
    for p in live:
        try:
            p.wait(wait)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def unmount(mnt: Path, *procs: subprocess.Popen[Any] | None, wait: float = 30) -> None:
    """Lazy-unmount ``mnt``, then stop the processes behind it (even if the unmount fails)."""
    try:
        subprocess.run(["fusermount3", "-u", "-z", str(mnt)], stderr=subprocess.DEVNULL)
    finally:
        stop(*procs, wait=wait)


def make_file(path: Path, size: int) -> None:
    """SIZE bytes of random data, every MiB different (its first byte counts up), quickly."""
    block = os.urandom(MiB)
    with open(path, "wb") as f:
        for i in range(size // MiB):
            f.write(bytes([i & 0xFF]) + block[1:])
        f.write(block[: size % MiB])


def alternating(names: Sequence[str], rounds: int) -> Iterator[tuple[int, str]]:
    """(round, name): ``names`` in order in even rounds, reversed in odd ones, so that no
    contender always goes first (a shared disk and CPU favour whoever runs on a quiet one)."""
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            yield r, name


def panfs_config(
    path: Path,
    drive: DriveAccount,
    cache_dir: Path,
    *,
    cache: dict[str, Any] | None = None,
    upload: dict[str, Any] | None = None,
) -> Path:
    """Write a panfs client config for ``drive`` (a new refresh token) to ``path``."""
    cfg: dict[str, Any] = {
        "remote": {
            "endpoint": drive.url,
            "client_id": drive.account["client_id"],
            "client_secret": drive.account["client_secret"],
            "refresh_token": drive.token(),
            "rate_limits": dict(NO_RATE_LIMITS),
        },
        "cache": {"dir": str(cache_dir), **(cache or {})},
    }
    if upload is not None:
        cfg["upload"] = upload
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    return path


class Closes:
    """``with X(...) as x:`` for anything with a ``close()``."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        raise NotImplementedError


class PanfsMount(Closes):
    """`panfs mount --foreground` of the drive, with its own config, cache and state under
    ``tmp/panfsN``. ``code``: PYTHONPATH of another panfs source tree (before/after runs).
    ``stop``/``start`` remount with the same cache and state; ``rss`` is the peak over all."""

    n = 0

    def __init__(
        self,
        drive: DriveAccount,
        tmp: Path,
        *,
        cache: dict[str, Any] | None = None,
        upload: dict[str, Any] | None = None,
        code: str | None = None,
    ) -> None:
        PanfsMount.n += 1
        self.base = tmp / f"panfs{PanfsMount.n}"
        self.mnt = self.base / "mnt"
        self.mnt.mkdir(parents=True)
        self.cfg = panfs_config(
            self.base / "c.yaml", drive, self.base / "cache", cache=cache, upload=upload
        )
        self.env = dict(os.environ, XDG_STATE_HOME=str(self.base / "state"))
        if code:
            self.env["PYTHONPATH"] = code
        self.proc: subprocess.Popen[bytes] | None = None
        self.peak = 0
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "panfs", "mount", "--foreground", "--config", str(self.cfg),
             str(self.mnt)],
            stderr=subprocess.DEVNULL, env=self.env, cwd=self.base,
        )  # fmt: skip
        try:
            wait_mount(self.mnt, self.proc)
        except BaseException:
            self.stop()
            raise

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def rss(self) -> int:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(OSError):  # it exited just now
                self.peak = max(self.peak, peak_rss(self.proc.pid))
        return self.peak

    def stop(self) -> None:
        if self.proc is None:
            return
        self.rss()
        proc, self.proc = self.proc, None
        unmount(self.mnt, proc, wait=60)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


class RcloneMount(Closes):
    """`rclone mount --vfs-cache-mode writes` (fresh cache, remote control on) of `rclone serve
    webdav` serving ``served`` on loopback, mounted at ``tmp/rc-mnt``."""

    def __init__(self, rclone: str, served: Path, tmp: Path) -> None:
        self.rclone = rclone
        self.mnt, self.cache = tmp / "rc-mnt", tmp / "rc-cache"
        for d in (self.mnt, self.cache):
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir()
        port, self.rc_port = free_port(), free_port()
        env = dict(
            os.environ,
            RCLONE_CONFIG_BENCH_TYPE="webdav",
            RCLONE_CONFIG_BENCH_URL=f"http://127.0.0.1:{port}",
            RCLONE_CONFIG_BENCH_VENDOR="other",
        )
        self.server: subprocess.Popen[bytes] = subprocess.Popen(
            [rclone, "serve", "webdav", str(served), "--addr", f"127.0.0.1:{port}"], **QUIET
        )
        self.proc: subprocess.Popen[bytes] | None = None
        try:

            def serving() -> bool:
                if self.server.poll() is not None:
                    raise SystemExit(f"rclone serve webdav failed ({self.server.returncode})")
                return listening(port)

            wait_until(serving, 15, 0.05)
            self.proc = subprocess.Popen(
                [rclone, "mount", "bench:", str(self.mnt), "--vfs-cache-mode", "writes",
                 "--cache-dir", str(self.cache), "--rc", "--rc-addr",
                 f"127.0.0.1:{self.rc_port}", "--rc-no-auth"],
                env=env, **QUIET,
            )  # fmt: skip
            wait_mount(self.mnt, self.proc)
        except BaseException:
            self.close()
            raise

    def busy(self) -> bool:
        """Uploads in progress or queued (or no readable answer from `rclone rc vfs/stats`)."""
        r = subprocess.run(
            [self.rclone, "rc", "vfs/stats", "--url", f"http://127.0.0.1:{self.rc_port}/"],
            capture_output=True, text=True,
        )  # fmt: skip
        try:
            disk = json.loads(r.stdout).get("diskCache", {})
        except ValueError:
            return True
        return bool(disk.get("uploadsInProgress") or disk.get("uploadsQueued"))

    def rss(self) -> int:
        assert self.proc is not None
        return peak_rss(self.proc.pid)

    def close(self) -> None:
        proc, self.proc = self.proc, None
        unmount(self.mnt, proc, self.server)
