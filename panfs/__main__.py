"""``python -m panfs``: the same entry point as the ``panfs`` console script."""

from panfs.cli import main

raise SystemExit(main())
