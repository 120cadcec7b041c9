"""The token state on disk: the current refresh token, never only in memory, never logged.

Owns: ``STATE_DIR/token.json`` (mode 0600), written temp + fsync + rename + fsync
dir, holding the rotated refresh token, the config token it descends from (so a
new token in the config wins), the last access token with its expiry, and the
"a refresh is in flight" mark; and ``STATE_DIR/token.lock``, the exclusive
``flock`` every process of one config takes around a refresh (the mount and any
number of ``panfs upload`` runs share one token chain: refresh tokens are single
use, so whoever holds the lock re-reads the file and refreshes only if the token
it holds is still the current one). The kernel drops the lock when its holder
dies, so a mark found while holding the lock belongs to a process that died
between sending a refresh and saving its answer. Must not: talk HTTP.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from panfs.atomic import write_atomic


@dataclass
class TokenState:
    seed: str  # the config's refresh token this chain started from
    refresh_token: str
    access_token: str = ""
    expires_at: float = 0.0
    lifetime: float = 7200.0  # the access token's lifetime as granted (for proactive refresh)
    # set (pid, unix time) just before a refresh is sent, cleared with its answer saved
    refreshing_pid: int = 0
    refreshing_since: float = 0.0


class TokenFile:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "token.json"
        self.lock_path = state_dir / "token.lock"

    def load(self) -> TokenState | None:
        try:
            data = json.loads(self.path.read_text())
            known = {f.name for f in fields(TokenState)}
            return TokenState(**{k: v for k, v in data.items() if k in known})
        except (OSError, ValueError, TypeError):
            return None

    def lock(self) -> int:
        """Take the lock and return its fd (``unlock`` it); for callers that cannot use
        a context manager across threads."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        return fd

    @staticmethod
    def unlock(fd: int) -> None:
        os.close(fd)

    def save(self, state: TokenState) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, json.dumps(asdict(state)), 0o600)
