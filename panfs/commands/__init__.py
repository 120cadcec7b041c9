"""One module per ``panfs`` subcommand: argument parsing and wiring only.

Each module exposes ``NAME``, ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int``. Commands may wire any layer together (they are the top of
the stack); they hold no filesystem, upload or protocol logic themselves.
"""
