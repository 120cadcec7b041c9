"""Where a mount's files live: the state dir, the cache dir, the log, and their checks.

Owns: the layout (``STATE_DIR``: ``journal.db``, ``token.json``, ``daemon.lock``,
``data/`` with versions not yet on the drive, ``panfs.log``; ``CACHE_DIR``:
``data/`` with clean, re-downloadable bytes only), creating the dirs with a
one-line reason when that fails, and refusing dirs inside the mount point.
Must not: open the journal or talk to the drive.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from panfs.config import Config
from panfs.errors import ConfigError


@dataclass(frozen=True)
class Layout:
    state_dir: Path
    cache_dir: Path
    log_file: Path

    @classmethod
    def of(cls, cfg: Config) -> Layout:
        return cls(cfg.state_dir, cfg.cache_dir, cfg.log_file)

    @property
    def journal(self) -> Path:
        return self.state_dir / "journal.db"

    @property
    def split(self) -> bool:
        """State and clean cache in separate folders (the default)."""
        return os.path.abspath(self.state_dir) != os.path.abspath(self.cache_dir)

    def make(self) -> None:
        dirs = [("state.dir", self.state_dir)] if self.split else []
        for key, d in [*dirs, ("cache.dir", self.cache_dir)]:
            try:
                d.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise ConfigError(
                    f"cannot create {key.split('.')[0]} dir {d}: {e.strerror}; set {key}"
                ) from None
            if not os.access(d, os.W_OK | os.X_OK):
                raise ConfigError(
                    f"{key.split('.')[0]} dir {d} is not writable by this user; "
                    f"run panfs as its owner or set {key}"
                )
        try:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(
                f"cannot create the log's folder {self.log_file.parent}: {e.strerror}; set log.file"
            ) from None

    def refuse_inside(self, mountpoint: Path) -> None:
        """A dir inside the mount would be served by the daemon that needs it: a deadlock."""
        mp = os.path.realpath(mountpoint)
        state = [("state.dir", self.state_dir)] if self.split else []
        for key, d in [*state, ("cache.dir", self.cache_dir), ("log.file", self.log_file)]:
            real = os.path.realpath(d)
            if os.path.commonpath([mp, real]) == mp:
                raise ConfigError(
                    f"{key} {d} is inside the mount point {mountpoint}; set {key} to a local folder"
                )
