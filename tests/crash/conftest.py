"""Crash tests reuse the real-mount fixtures."""

from tests.fuse.conftest import Mounted, mount, mounted

__all__ = ["Mounted", "mount", "mounted"]
