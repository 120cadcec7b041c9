"""Start panfs child processes and make sure they end, by PID, whatever happens.

Every child's stderr goes to a log file; ``check_logs`` fails a test on any
traceback or unexpected WARNING/ERROR line (S3QL's checklogs idea).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

PANFS = [sys.executable, "-P", "-m", "panfs"]

_BAD = re.compile(r"Traceback \(most recent call last\)|\b(WARNING|ERROR|CRITICAL)\b")


def require_fuse() -> None:
    """Skip the calling test unless real mounts are possible here (root and /dev/fuse)."""
    import pytest

    if not os.path.exists("/dev/fuse") or os.geteuid() != 0:
        pytest.skip("needs root and /dev/fuse")


def stop(proc: subprocess.Popen[bytes] | subprocess.Popen[str], grace: float = 5.0) -> None:
    """Terminate, then kill, a child by PID; never raises."""
    if proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(grace)
    except ProcessLookupError:
        pass


def kill9(proc: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    """SIGKILL and reap: the crash every recovery test is about."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)


def check_logs(path: Path, allow: Iterable[str] = ()) -> None:
    """Fail on a traceback or a WARNING/ERROR line not matched by ``allow`` regexes."""
    if not path.exists():
        return
    allowed = [re.compile(a) for a in allow]
    bad = [
        line
        for line in path.read_text(errors="replace").splitlines()
        if _BAD.search(line) and not any(a.search(line) for a in allowed)
    ]
    assert not bad, f"unexpected lines in {path}:\n" + "\n".join(bad[:20])


def wait_for(
    pred: object, what: str, proc: subprocess.Popen[str] | None = None, limit: float = 30.0
) -> None:
    """Poll ``pred()`` until true; fail early if ``proc`` died. ``limit`` only bounds a hang."""
    assert callable(pred)
    deadline = time.monotonic() + limit
    while not pred():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode} while waiting for {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


def run_panfs_reaping(
    args: Sequence[str], child: subprocess.Popen[bytes] | None, limit: float = 600, **popen: Any
) -> subprocess.CompletedProcess[str]:
    """``panfs ARGS`` while ``child`` (a daemon we started) is reaped the moment it exits: a
    command that waits for the daemon's pid to go (``umount``) would otherwise see a zombie
    and sit out its whole grace period. Output is read at the end (it must fit a pipe);
    ``popen`` may give ``env``, or a terminal as stdin/stdout/stderr. ``limit`` bounds a hang."""
    popen.setdefault("stdin", subprocess.DEVNULL)
    popen.setdefault("stdout", subprocess.PIPE)
    popen.setdefault("stderr", subprocess.PIPE)
    with subprocess.Popen([*PANFS, *args], text=True, **popen) as p:

        def done() -> bool:
            if child is not None:
                child.poll()
            return p.poll() is not None

        try:
            wait_for(done, f"panfs {' '.join(args)}", limit=limit)
            out, err = p.communicate()
        finally:
            stop(p)
    return subprocess.CompletedProcess(p.args, p.returncode, out or "", err or "")


def run_panfs(args: Sequence[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PANFS, *args], capture_output=True, text=True, **kw)  # type: ignore[call-overload, no-any-return]
