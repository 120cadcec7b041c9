"""The task tree a hung daemon logs on SIGUSR2: every task by name, with the lines it
awaits at (ours relative to the checkout)."""

from __future__ import annotations

import trio
import trio.testing

from panfs.taskdump import task_tree


async def _parked_here(ev: trio.Event) -> None:
    await ev.wait()


async def test_each_task_is_named_with_where_it_waits() -> None:
    ev = trio.Event()
    async with trio.open_nursery() as n:
        n.start_soon(_parked_here, ev, name="the-parked-one")
        await trio.testing.wait_all_tasks_blocked()
        tree = task_tree()
        ev.set()
    lines = tree.splitlines()
    at = next(i for i, line in enumerate(lines) if line.endswith("- the-parked-one"))
    assert "tests/unit/test_taskdump.py:" in lines[at + 1]
    assert lines[at + 1].endswith(" _parked_here")
    assert "trio/_sync.py" in lines[at + 2]  # the library's frame under it (Event.wait)
    assert "_core" not in tree  # the scheduler's own frames are left out
