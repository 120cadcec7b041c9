"""The reference-model test of the write path (issue 8; docs/semantics.md).

Random sequences of create / write / reopen without writing / truncate / append /
patch / two writers / rename / rename-over / unlink / mkdir / rmdir with short
sleeps, server delays, kills and remounts; after every step the tree read back
equals the model, and after the uploads finished the drive itself (Open API, and
the server's store) holds exactly the model's tree, one copy per name, no stale
bytes. Upload sessions left open are counted and printed (the protocol has no
abort: a superseded session is abandoned and expires on the server).

Per seed: ``mount.list_ttl`` (0.01 / 0.3 / 30 s) and ``upload.delay`` (0 / 0.05 /
0.3 s); every tenth seed picks server delay rules for the next ten. In process
(``test_model_core``, 200 sequences by default, 600 with ``PANFS_TEST_FULL=1``, 6 at a
time, each its own core, cache dir and drive folder) and through a real mount with real SIGKILLs
(``test_model_mount``, default 6).

Environment: ``PANFS_MODEL_SEQUENCES`` / ``PANFS_MODEL_MOUNT_SEQUENCES`` (counts),
``PANFS_MODEL_SEED`` (first seed), ``PANFS_MODEL_MAX_STEPS``, ``PANFS_MODEL_PARALLEL``,
``PANFS_MODEL_KEEP_GOING=1`` (run every seed, report each failure), ``PANFS_MODEL_COPIES``
(each seed that many times side by side: a race a batch met, met again),
``PANFS_MODEL_LOG=1`` (the core's debug log of a failed sequence printed under it),
``PANFS_MODEL_REPLAY='[((op...), errno), ...]'`` (a failure's op list, shortened by
hand), ``PANFS_MODEL_TRACE=1`` (time per step), ``PANFS_MODEL_NO_DELAYS=1``,
``PANFS_MODEL_STRICT_SESSIONS=1`` (an open session fails the sequence),
``PANFS_MODEL_PROFILE`` (the in-process sequences' drive server profile, e.g. ``strict``). A failure
prints its seed, the command that replays it and the op list.
"""

from __future__ import annotations

import ast
import contextvars
import logging
import os
import random
import time
from pathlib import Path
from typing import Any

import pytest
import trio

from panfs.inodes import ROOT_INO
from tests.model.adapters import CoreFS, MountFS
from tests.model.model import (
    Op,
    SequenceFailed,
    Step,
    drive_problems,
    env_int,
    failure,
    fault_rules,
    generate,
    lengths,
    replay,
    run_sequence,
    seeds,
)
from tests.support.core import test_sections
from tests.support.drive import DriveReader, DriveServer
from tests.support.scale import pick

KEEP_GOING = os.environ.get("PANFS_MODEL_KEEP_GOING") == "1"


def _list_ttl(seed: int) -> float:
    return random.Random(seed * 31).choice((0.01, 0.3, 30.0))


def _upload_delay(seed: int) -> float:
    """The write-back delay: none (every close races its upload), short, or coalescing."""
    return random.Random(seed * 37).choice((0.0, 0.05, 0.3))


# in process the client does not pace (the server it talks to has no limits either): the
# interleavings come denser, and pacing is the mount-level model's and the pacer tests' part
UNPACED = {"list": 0, "getDownloadUrl": 0, "*": 0}


def _sections(seed: int) -> dict[str, dict[str, Any]]:
    return {
        "mount": {"list_ttl": _list_ttl(seed)},
        "upload": {"delay": _upload_delay(seed)},
        "remote": {"rate_limits": UNPACED},
    }


def _faults(seed: int) -> list[dict[str, object]]:
    return fault_rules(seed) if seed % 2 and not os.environ.get("PANFS_MODEL_NO_DELAYS") else []


# PANFS_MODEL_LOG=1: the core's debug log kept in memory per sequence (each record stamped
# with the sequence its task ran for) and printed under a failure; cheaper than log_cli,
# which slows the cores enough to hide the races
_SEQUENCE: contextvars.ContextVar[str] = contextvars.ContextVar("sequence", default="")


class _Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[tuple[str, logging.LogRecord]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((_SEQUENCE.get(), record))

    def lines(self, base: str) -> str:
        t0 = self.records[0][1].created if self.records else 0.0
        return "\n".join(
            f"  {time.strftime('%H:%M:%S', time.gmtime(r.created))}.{int(r.msecs):03d}"
            f" {r.created - t0:8.3f} {r.name} {r.getMessage()}"
            for b, r in self.records
            if b == base
        )


def _keep_log() -> _Kept | None:
    if os.environ.get("PANFS_MODEL_LOG") != "1":
        return None
    kept = _Kept()
    logging.getLogger("panfs").addHandler(kept)
    logging.getLogger("panfs").setLevel(logging.DEBUG)
    return kept


def _report(failures: list[str], count: int, longest: int) -> None:
    print(f"model: {count} sequences, longest {longest} steps, {len(failures)} failed")
    if failures:
        raise SequenceFailed("\n\n".join(failures))


async def _core_sequence(
    tmp_path: Path,
    drive: DriveServer,
    reader: DriveReader,
    seed: int,
    steps: list[Step],
    alone: bool,
    base: str = "",
) -> None:
    base = base or f"s{seed}"
    fs = CoreFS(drive, tmp_path / f"c{base}", base, **_sections(seed))
    if seed % 10 == 1 or alone:  # every tenth sequence picks the delays for the next ten
        drive.set_faults(_faults((seed - 1) // 10 * 10 + 1))
    try:
        await fs.start()
        await fs.core.mkdir(ROOT_INO, base, 0o755, os.getuid(), os.getgid())
        await run_sequence("core", seed, steps, fs, lambda s: drive.set_faults(fault_rules(s)))
        t0 = time.monotonic()
        with trio.move_on_after(120) as guard:  # a hang guard, not a speed limit
            await fs.wait_idle()
        if os.environ.get("PANFS_MODEL_TRACE") == "1":
            print(f"wait_idle {time.monotonic() - t0:.3f}s")
        if guard.cancelled_caught:
            raise failure("core", seed, steps, None, "uploads never finished")
        await fs.stop()
        problems = drive_problems(reader, drive, base, replay(steps)[-1])
        if problems:
            raise failure("core", seed, steps, None, "; ".join(problems))
    finally:
        if fs.stack is not None:
            await fs.stop(crash=True)


# a kill in process cancels uploads mid-request: httpx's body generator is collected unexhausted
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.timeout(1800)  # a hang guard sized for PANFS_TEST_FULL=1, not a speed limit
async def test_model_core(tmp_path: Path) -> None:
    profile = os.environ.get("PANFS_MODEL_PROFILE")  # a drive server profile (e.g. strict)
    args = ("--profile", profile) if profile else ()
    with DriveServer(tmp_path / "drive", "--no-rate-limits", *args) as drive:
        await _model_core(tmp_path, drive)


async def _model_core(tmp_path: Path, drive: DriveServer) -> None:
    reader = DriveReader(drive)
    failures: list[str] = []
    replaying = os.environ.get("PANFS_MODEL_REPLAY")
    if replaying:  # an op list as printed by a failure, edited by hand to shrink it
        seed = env_int("PANFS_MODEL_SEED", 1)
        steps = [Step(tuple(op), int(err)) for op, err in ast.literal_eval(replaying)]
        plan = [(seed, steps)]
    else:
        # a few hundred in every run (about 4 min on two loaded cores, 6 at a time), 600
        # with PANFS_TEST_FULL=1
        count = pick(600, 200)
        plan = [(s, generate(s, lengths(s, 24), in_process=True)) for s in seeds(count)]
    copies = env_int("PANFS_MODEL_COPIES", 1)  # a race met in a batch: the seed N times at once
    plan = [(seed, steps, f"s{seed}" + (f"-{k}" if copies > 1 else ""))
            for seed, steps in plan for k in range(copies)]  # fmt: skip
    longest = max(len(steps) for _, steps, _ in plan)
    # sequences run side by side (own core, cache dir and drive folder each) so that one's
    # sleeps and server delays overlap another's work; fault rules are the server's, shared
    limit = trio.CapacityLimiter(env_int("PANFS_MODEL_PARALLEL", 6))

    kept = _keep_log()
    # one seed alone (its copies too) sets the server delays its batch of ten would have
    alone = len({seed for seed, _, _ in plan}) == 1

    async def one(seed: int, steps: list[Step], base: str, cancel: trio.CancelScope) -> None:
        async with limit:
            _SEQUENCE.set(base)
            try:
                await _core_sequence(tmp_path, drive, reader, seed, steps, alone, base)
            except SequenceFailed as e:
                print(e)
                if kept is not None:
                    print(f"log of {base}:\n{kept.lines(base)}")
                failures.append(str(e))
                if not KEEP_GOING:
                    cancel.cancel()

    try:
        async with trio.open_nursery() as nursery:
            for seed, steps, base in plan:
                nursery.start_soon(one, seed, steps, base, nursery.cancel_scope)
    finally:
        if kept is not None:
            logging.getLogger("panfs").removeHandler(kept)
    _report(failures[:1] if not KEEP_GOING else failures, len(plan), longest)


# Short sequences the random runs found, kept as they were found (seed = its settings and
# server delays); each runs a few times, as the race they hit is one of timing.
KNOWN: list[tuple[int, list[Op]]] = [
    # an empty version lands at create, a longer one replaces it, a 1-byte one supersedes
    # that before it lands: the empty file must not stay beside the last one
    (7, [("write", "y", 3, 0), ("append", "y", 4, 10000), ("write", "y", 5, 1)]),
]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize(("seed", "ops"), KNOWN, ids=[f"seed{s}" for s, _ in KNOWN])
async def test_model_known_sequences(
    tmp_path: Path, drive: DriveServer, seed: int, ops: list[Op]
) -> None:
    reader = DriveReader(drive)
    for attempt in range(3):
        steps = [Step(op) for op in ops]
        try:
            await _core_sequence(
                tmp_path / f"a{attempt}", drive, reader, seed, steps, True, f"s{seed}a{attempt}"
            )
        except SequenceFailed as e:
            print(e)
            raise


@pytest.mark.fuse
@pytest.mark.crash
async def test_model_mount(tmp_path: Path, drive: DriveServer) -> None:
    if not os.path.exists("/dev/fuse") or os.geteuid() != 0:  # noqa: ASYNC240
        pytest.skip("needs root and /dev/fuse")
    from tests.fuse.conftest import Mounted

    reader = DriveReader(drive)
    failures: list[str] = []
    base_seed = env_int("PANFS_MODEL_SEED", 1) + 100_000
    count = env_int("PANFS_MODEL_MOUNT_SEQUENCES", 6)
    longest = 0
    for seed in range(base_seed, base_seed + count):
        steps = generate(seed, lengths(seed, 25), in_process=False)
        longest = max(longest, len(steps))
        base = f"s{seed}"
        sections = test_sections(**_sections(seed))
        m = Mounted(tmp_path / f"m{seed}", drive, **sections)
        fs = MountFS(m, base)
        drive.set_faults(_faults(seed))
        try:
            os.mkdir(m.path / base)
            await run_sequence("mount", seed, steps, fs, lambda s: drive.set_faults(fault_rules(s)))
            fs.umount_wait()
            drive.set_faults([])
            problems = drive_problems(reader, drive, base, replay(steps)[-1])
            if problems:
                raise failure("mount", seed, steps, None, "; ".join(problems))
        except SequenceFailed as e:
            print(e)
            if not KEEP_GOING:
                raise
            failures.append(str(e))
        finally:
            fs.close()
            drive.set_faults([])
            m.close()
    _report(failures, count, longest)
