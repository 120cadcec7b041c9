"""The retry policy and the pacer on trio's fake clock (no network, no wall time)."""

from __future__ import annotations

import itertools

import pytest
import trio
import trio.testing

from panfs.errors import PermanentError, RateLimitedError, TransientError
from panfs.remote.retry import SAFETY, Pacer, Retry, normalize_limits


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


async def test_pacer_spaces_each_budget_and_shares_the_rest(
    autojump_clock: trio.testing.MockClock,
) -> None:
    pacer = Pacer(normalize_limits({}))
    sent: dict[str, list[float]] = {}

    async def call(op: str) -> None:
        await pacer.wait(op)
        sent.setdefault(pacer.key(op), []).append(trio.current_time())

    async with trio.open_nursery() as nursery:
        for _ in range(8):
            nursery.start_soon(call, "openFile/list")
            nursery.start_soon(call, "openFile/getDownloadUrl")
            nursery.start_soon(call, "openFile/create")
            nursery.start_soon(call, "openFile/complete")
    for key, rate in (("list", 4), ("getDownloadUrl", 1), ("*", 15)):
        times = sent[key]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert min(gaps) >= SAFETY / rate - 1e-9, key
    assert len(sent["*"]) == 16  # create and complete share one budget


async def test_a_hold_delays_calls_already_waiting(autojump_clock: trio.testing.MockClock) -> None:
    pacer = Pacer(normalize_limits({"list": 1}))
    await pacer.wait("openFile/list")  # the next slot is 1.25 s away
    done: list[float] = []

    async def later() -> None:
        await pacer.wait("openFile/list")
        done.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(later)
        await trio.sleep(0.1)
        pacer.hold("openFile/list", 5.0)  # a 429 said: 5 s
    assert done[0] >= 5.1 - 1e-9


async def test_retry_waits_out_429s_and_bounds_the_rest(
    autojump_clock: trio.testing.MockClock,
) -> None:
    retry = Retry(Pacer(normalize_limits({})), attempts=3, max_backoff=1.0)
    calls = 0

    async def limited() -> str:
        nonlocal calls
        calls += 1
        if calls <= 10:  # more 429s than attempts: still waits
            raise RateLimitedError("slow down", retry_after=2.0, status=429)
        return "ok"

    start = trio.current_time()
    assert await retry.run("openFile/list", limited) == "ok"
    assert trio.current_time() - start >= 20.0 - 1e-9

    calls = 0

    async def failing() -> str:
        nonlocal calls
        calls += 1
        raise TransientError("HTTP 503", status=503)

    with pytest.raises(TransientError):
        await retry.run("openFile/list", failing)
    assert calls == 3

    calls = 0

    async def refused() -> str:
        nonlocal calls
        calls += 1
        raise PermanentError("no", status=400)

    with pytest.raises(PermanentError):
        await retry.run("openFile/list", refused)
    assert calls == 1
