"""The daemon's log: where it goes, how loud it is, rotation, and names that cannot forge lines.

Owns: setting up logging for ``panfs mount`` (a size-rotated file, ``log.file`` /
``--log-file``, default ``STATE_DIR/panfs.log``; the level from ``log.level``,
``--log-level``, ``-v``/``-q``), and ``quote``, the one way a file name is put into
a log or status line. Must not: decide what is logged.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path

from panfs.config import LOG_LEVELS

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_ESC = {"\n": "\\n", "\r": "\\r", "\t": "\\t", '"': '\\"', "\\": "\\\\"}


def quote(name: str) -> str:
    """``name`` in double quotes with every control or escape character, quote, backslash
    and undecodable byte written as an escape: a name can never start a new line, move
    the cursor or end the quotes early. Printable non-ASCII (e.g. 中文) stays as it is."""
    out = []
    for ch in name:
        if ch in _ESC:
            out.append(_ESC[ch])
        elif 0xDC80 <= ord(ch) <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        elif not ch.isprintable():
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _escape_controls(text: str) -> str:
    return "".join(
        _ESC.get(ch, ch) if ch in "\n\r\t" else (ch if ch.isprintable() else f"\\x{ord(ch):02x}")
        for ch in text
    )


class SafeFormatter(logging.Formatter):
    """Every message is one line whatever it carries: newlines, escape codes and other
    control characters in it are written as escapes (a name logged by any module cannot
    forge a line). A traceback, appended after the message, keeps its lines."""

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if not msg.isprintable():
            record = logging.makeLogRecord(record.__dict__)
            record.msg, record.args = _escape_controls(msg), None
        return super().format(record)


def level(base: str, verbose: int = 0, quiet: int = 0, explicit: str | None = None) -> int:
    """``--log-level`` wins; else the config's level moved down by ``-v``, up by ``-q``."""
    if explicit:
        return int(getattr(logging, explicit.upper()))
    i = LOG_LEVELS.index(base.upper()) - verbose + quiet
    return int(getattr(logging, LOG_LEVELS[max(0, min(len(LOG_LEVELS) - 1, i))]))


def setup(
    log_file: Path, lvl: int, *, max_size: int, backups: int, foreground: bool = False
) -> None:
    handlers: list[logging.Handler] = [
        logging.handlers.RotatingFileHandler(
            log_file, maxBytes=max_size, backupCount=backups, encoding="utf-8"
        )
    ]
    if foreground:
        handlers.append(logging.StreamHandler(sys.stderr))
    for h in handlers:
        h.setFormatter(SafeFormatter(FORMAT))
    logging.basicConfig(level=lvl, handlers=handlers, force=True)
    # httpx logs every request at INFO: only its warnings, unless asked for DEBUG
    logging.getLogger("httpx").setLevel(logging.DEBUG if lvl <= logging.DEBUG else logging.WARNING)
    logging.getLogger("httpcore").setLevel(
        logging.INFO if lvl <= logging.DEBUG else logging.WARNING
    )
