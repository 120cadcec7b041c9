"""The ``panfs`` command line: parse, dispatch to ``panfs.commands.*``, report errors.

Owns: the top-level parser (with an example per command, and shell completion
through argcomplete when it is installed), ``--version`` (with the Python,
pyfuse3 and libfuse versions), the ``mount.fuse3`` calling convention
(``panfs SOURCE MOUNTPOINT -o OPTIONS``), and turning any ``PanfsError`` into
one line on stderr with the exit code of ``panfs.exitcodes`` (a closed pipe
on stdout ends quietly). Must not: hold command logic.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
from collections.abc import Sequence
from types import ModuleType

from panfs import __version__, exitcodes
from panfs.errors import PanfsError

COMMANDS = ("serve", "upload", "mount", "umount", "status", "retry", "forget", "login")


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
        prog="panfs",
        description="Mount a cloud drive as a local filesystem.",
        epilog=_codes_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version",
        action=_Version,
        nargs=0,
        help="show the panfs, Python, pyfuse3 and libfuse versions and exit",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        mod = _module(name)
        p = sub.add_parser(
            name,
            help=mod.HELP,
            description=mod.HELP,
            epilog=getattr(mod, "EXAMPLE", None),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        mod.add_arguments(p)
    return parser


class _Version(argparse.Action):
    """``--version``: the versions are looked up (libfuse through ctypes) only when asked."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        print(version_text())
        parser.exit()


def _codes_epilog() -> str:
    rows = "\n".join(f"  {code:<4} {meaning}" for code, meaning in exitcodes.TABLE)
    return "exit codes (every command):\n" + rows


def version_text() -> str:
    """panfs, Python, pyfuse3 and libfuse versions (libfuse as the loaded library says)."""
    parts = [f"panfs {__version__}", f"Python {platform.python_version()}"]
    try:
        from importlib.metadata import version

        parts.append(f"pyfuse3 {version('pyfuse3')}")
    except Exception:
        parts.append("pyfuse3 not installed")
    parts.append(f"libfuse {_libfuse_version()}")
    return ", ".join(parts)


def _libfuse_version() -> str:
    import ctypes
    import ctypes.util

    for name in ("libfuse3.so.3", ctypes.util.find_library("fuse3")):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        pkg = getattr(lib, "fuse_pkgversion", None)
        if pkg is not None:
            pkg.restype = ctypes.c_char_p
            return str(pkg().decode())
        n = lib.fuse_version()
        return f"{n // 10}.{n % 10}"
    return "not found"


def _complete(parser: argparse.ArgumentParser) -> None:
    """Shell completion (``eval "$(register-python-argcomplete panfs)"``), if installed."""
    if "_ARGCOMPLETE" not in os.environ:
        return
    try:
        import argcomplete
    except ImportError:
        return
    argcomplete.autocomplete(parser)


def _first(group: BaseExceptionGroup[PanfsError]) -> BaseException:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def main(argv: Sequence[str] | None = None) -> int:
    args_list = _fstab_argv(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser()
    _complete(parser)
    args = parser.parse_args(args_list)
    try:
        result: int = _module(args.command).run(args)
    except PanfsError as e:
        print(f"panfs {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except BaseExceptionGroup as group:
        matched, _ = group.split(PanfsError)
        if matched is None:
            if group.subgroup(BrokenPipeError) is not None:
                return _broken_pipe()
            raise
        first = _first(matched)
        print(f"panfs {args.command}: error: {first}", file=sys.stderr)
        return first.exit_code if isinstance(first, PanfsError) else exitcodes.FAILURE
    except BrokenPipeError:
        return _broken_pipe()
    except KeyboardInterrupt:
        return exitcodes.INTERRUPTED
    return result


def _broken_pipe() -> int:
    """stdout's reader went away (``panfs upload --json | head``): end quietly, as cat does.
    stdout is pointed at /dev/null so the interpreter's final flush cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return exitcodes.FAILURE
