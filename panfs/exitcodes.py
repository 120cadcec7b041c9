"""Exit codes of every ``panfs`` command: one table, used by all of them.

Owns: the numbers and their meaning (README and docs/commands.md print the same
table; a test holds them together). Must not: import anything of panfs.

=====  ==========================================================================
code   meaning
=====  ==========================================================================
0      done: everything asked for happened
1      runtime failure: the drive, the daemon or the local disk failed
2      usage or config error: fix the command line or the config file
3      done, but some files need attention (failed or interrupted uploads):
       the command printed which, and what to do (``panfs retry`` / ``panfs forget``)
130    interrupted by Ctrl-C
=====  ==========================================================================
"""

from __future__ import annotations

OK = 0
FAILURE = 1
USAGE = 2
ATTENTION = 3
INTERRUPTED = 130

TABLE: tuple[tuple[int, str], ...] = (
    (OK, "done: everything asked for happened"),
    (FAILURE, "runtime failure: the drive, the daemon or the local disk failed"),
    (USAGE, "usage or config error: fix the command line or the config file"),
    (ATTENTION, "done, but some files need attention (failed or interrupted uploads)"),
    (INTERRUPTED, "interrupted by Ctrl-C"),
)
