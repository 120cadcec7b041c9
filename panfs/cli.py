"""The ``panfs`` command line: parse, dispatch to ``panfs.commands.*``, report errors.

Owns: the top-level parser, the ``mount.fuse3`` calling convention
(``panfs SOURCE MOUNTPOINT -o OPTIONS``), and turning any ``PanfsError`` into
one line on stderr with a non-zero exit. Must not: hold command logic.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

from panfs import __version__
from panfs.errors import PanfsError

COMMANDS = ("serve", "upload", "mount", "umount", "status", "login")


def _module(name: str) -> ModuleType:
    return importlib.import_module(f"panfs.commands.{name}")


def _fstab_argv(argv: list[str]) -> list[str]:
    """``panfs SOURCE MOUNTPOINT -o OPTS`` (as mount.fuse3 calls us) -> ``mount`` argv."""
    if argv and argv[0] not in COMMANDS and not argv[0].startswith("-"):
        positional = [a for a in argv if not a.startswith("-")]
        if len(positional) >= 2:
            return ["mount", "--source", *argv]
    return argv


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="panfs", description="Mount a cloud drive as a local filesystem."
    )
    parser.add_argument("--version", action="version", version=f"panfs {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        mod = _module(name)
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
    return parser


def _first(group: BaseExceptionGroup[PanfsError]) -> BaseException:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def main(argv: Sequence[str] | None = None) -> int:
    args_list = _fstab_argv(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser()
    args = parser.parse_args(args_list)
    try:
        result: int = _module(args.command).run(args)
    except PanfsError as e:
        print(f"panfs {args.command}: error: {e}", file=sys.stderr)
        return 2
    except BaseExceptionGroup as group:
        matched, _ = group.split(PanfsError)
        if matched is None:
            raise
        first = _first(matched)
        print(f"panfs {args.command}: error: {first}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return result
