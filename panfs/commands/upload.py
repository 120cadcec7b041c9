"""``panfs upload``: placeholder until its issue lands."""

from __future__ import annotations

import argparse

from panfs.errors import UsageError

HELP = "upload (not built yet)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rest", nargs=argparse.REMAINDER)


def run(args: argparse.Namespace) -> int:
    raise UsageError("'panfs upload' is not built yet")
