"""One retry policy for every call to the drive: back-off, ``retry_after``, and the pacer.

Owns: the back-off formula (full jitter, capped), what a failure's wait is (a 429's
``x-retry-after``, else the back-off), whether a failure is worth another attempt
(every 5xx, 429 and network failure is, whatever its body; only errors understood
as permanent are not), and the client-side pacer: one token interval per endpoint
at the official limits (``openFile/list`` 4/s, ``getDownloadUrl`` 1/s, every other
call 15/s; ``remote.rate_limits``), shared by everything that uses one client. An
endpoint without a limit of its own shares the ``*`` budget with every other such
endpoint (the harsher reading of "every other call 15/s": one budget, not one each). A
429 holds its endpoint for ``x-retry-after``, and a rate-limited call waits for as
long as it takes: it never fails because of rate limiting. Must not: know the
Open API's bodies or do HTTP (``client.py`` does).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import trio

from panfs.errors import RateLimitedError, RemoteError

log = logging.getLogger(__name__)

_RNG = random.Random()

# the official per-user limits (requests per second); "*" is every other API call
DEFAULT_RATE_LIMITS: dict[str, float] = {"list": 4.0, "getDownloadUrl": 1.0, "*": 15.0}
LONG_WAIT = 5.0  # a pacer wait this long is logged (once per endpoint and minute)
SAFETY = 1.25  # requests are spaced this much wider than the limit (jitter on the way)


def backoff(attempt: int, cap: float, rng: random.Random = _RNG) -> float:
    """Full-jitter exponential back-off: uniform in [0, min(cap, 0.5 * 2**attempt)]."""
    return rng.uniform(0, min(cap, 0.5 * 2**attempt))


def endpoint(op: str) -> str:
    """The pacer's key for an API path: its last segment (``openFile/list`` -> ``list``)."""
    return op.rstrip("/").rsplit("/", 1)[-1]


def normalize_limits(limits: Mapping[str, float] | None) -> dict[str, float]:
    """``remote.rate_limits`` merged over the defaults, keyed by endpoint."""
    out = dict(DEFAULT_RATE_LIMITS)
    for k, v in (limits or {}).items():
        out[endpoint(k) if k != "*" else "*"] = float(v)
    return out


@dataclass
class Pacer:
    """Spaces the calls of each endpoint at most ``rate`` per second (one process, one
    client, one pacer). ``hold`` pushes an endpoint's next slot out (a 429's
    ``x-retry-after``). Rates of 0 or less mean "no limit"."""

    limits: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_RATE_LIMITS))
    clock: Callable[[], float] = trio.current_time
    sleep: Callable[[float], Awaitable[None]] = trio.sleep
    _next: dict[str, float] = field(default_factory=dict)
    _held: dict[str, float] = field(default_factory=dict)
    _logged: dict[str, float] = field(default_factory=dict)

    def key(self, op: str) -> str:
        """The budget ``op`` spends: its own when it has a limit, else the shared ``*``."""
        name = endpoint(op)
        return name if name in self.limits else "*"

    async def wait(self, op: str) -> None:
        """Return when ``op`` may be sent; reserves its slot first (no lock needed: a trio
        task does not yield between reading and writing ``_next``)."""
        key = self.key(op)
        rate = self.limits.get(key, 0.0)
        now = self.clock()
        slot = max(now, self._next.get(key, now))
        interval = SAFETY / rate if rate > 0 else 0.0
        self._next[key] = slot + interval
        delay = slot - now
        if delay >= LONG_WAIT and now - self._logged.get(key, -1e9) > 60:
            self._logged[key] = now
            log.info("%s: pacing at the drive's rate limit, waiting %.0fs", key, delay)
        if delay > 0:
            await self.sleep(delay)
        # a 429 that came while this call waited holds it too
        while (left := self._held.get(key, 0.0) - self.clock()) > 0:
            await self.sleep(left)

    def hold(self, op: str, seconds: float) -> None:
        """The drive said wait (429 ``x-retry-after``): nothing of ``op`` before then."""
        key = self.key(op)
        until = self.clock() + max(0.0, seconds)
        if until > self._next.get(key, 0.0):
            self._next[key] = until
        if until > self._held.get(key, 0.0):
            self._held[key] = until
        if seconds >= LONG_WAIT:
            log.info("%s: the drive asks to wait %.0fs (rate limit)", key, seconds)


T = TypeVar("T")


@dataclass
class Retry:
    """The one retry loop: ``once`` is attempted until it returns, raises a permanent
    error, or has failed transiently ``attempts`` times (the last error is raised). A
    429 does not use up an attempt: it holds the endpoint and the call waits."""

    pacer: Pacer
    attempts: int = 5
    max_backoff: float = 60.0
    sleep: Callable[[float], Awaitable[None]] = trio.sleep

    async def run(self, op: str, once: Callable[[], Awaitable[T]], *, paced: bool = True) -> T:
        failures = 0
        while True:
            if paced:
                await self.pacer.wait(op)
            try:
                return await once()
            except RateLimitedError as e:
                if paced:
                    self.pacer.hold(op, e.retry_after)
                else:
                    await self.sleep(e.retry_after)
                continue
            except RemoteError as e:
                if not e.transient:
                    raise
                failures += 1
                if failures >= self.attempts:
                    raise
                delay = backoff(failures - 1, self.max_backoff)
                log.info("%s: %s; retrying in %.1fs", op, e.describe(), delay)
                await self.sleep(delay)
