"""Fixtures shared by every test level."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.drive import DriveServer


@pytest.fixture
def drive(tmp_path: Path) -> Iterator[DriveServer]:
    """A fresh drive server on loopback with short, test-friendly lifetimes off by default."""
    server = DriveServer(tmp_path / "drive")
    try:
        yield server
    finally:
        server.close()
