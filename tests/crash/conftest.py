"""Crash tests reuse the real-mount fixture."""

from tests.fuse.conftest import Mounted, mounted

__all__ = ["Mounted", "mounted"]
