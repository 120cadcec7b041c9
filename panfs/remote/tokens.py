"""The token state on disk: the current refresh token, never only in memory, never logged.

Owns: ``STATE_DIR/token.json`` (mode 0600), written temp + fsync + rename + fsync
dir, holding the rotated refresh token, the config token it descends from (so a
new token in the config wins), and the last access token with its expiry.
Must not: talk HTTP.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class TokenState:
    seed: str  # the config's refresh token this chain started from
    refresh_token: str
    access_token: str = ""
    expires_at: float = 0.0
    lifetime: float = 7200.0  # the access token's lifetime as granted (for proactive refresh)


class TokenFile:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "token.json"

    def load(self) -> TokenState | None:
        try:
            data = json.loads(self.path.read_text())
            return TokenState(**data)
        except (OSError, ValueError, TypeError):
            return None

    def save(self, state: TokenState) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(asdict(state), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        dfd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
