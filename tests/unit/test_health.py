"""The drive-health file the daemon keeps for ``panfs status``: it says "unreachable" only
after ``grace`` seconds of errors with no acknowledged part, and goes once one is acked."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from panfs import health
from panfs.daemon import _Reporter
from panfs.journal import Journal, PartRecord
from panfs.metadata import open_db


def _ack(journal: Journal, job_id: int, n: int, at: float) -> None:
    journal.record_part(job_id, PartRecord(n, (n - 1) * 10, 10, "e", "x", at))


def test_errors_between_acks_are_not_an_outage(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    src = tmp_path / "src"
    src.write_bytes(b"s" * 100)
    db = open_db(tmp_path / "journal.db")
    try:
        journal = Journal(db)
        job, _ = journal.add(source=str(src), parent_file_id="root", name="f", remote_path="/f")
        rep = _Reporter(journal, tmp_path, grace=30.0)
        t0 = rep.last_ack
        caplog.set_level(logging.INFO, "panfs.daemon")
        # a flaky drive: an error, a part acked, the same error again, for minutes
        for i in range(1, 20):
            now = t0 + 10 * i
            journal.note_error(job.id, "HTTP 503", now + 1)
            rep.check(now)
            assert health.read(tmp_path) is None, i
            _ack(journal, job.id, i, now + 5)
            rep.check(now + 5)
        warned = [r for r in caplog.records if "retrying" in r.getMessage()]
        assert len(warned) == 19  # one per error, each after a part got through
        # then nothing is acked: after grace, "since" is the last ack, not the first error
        last = t0 + 195
        journal.note_error(job.id, "connection refused", last + 1)
        rep.check(last + 29)
        assert health.read(tmp_path) is None
        rep.check(last + 31)
        assert health.read(tmp_path) == {"since": last, "error": "connection refused"}
        rep.check(last + 40)
        assert len([r for r in caplog.records if "retrying" in r.getMessage()]) == 20
        # the drive acknowledges a part again: the file goes
        _ack(journal, job.id, 21, last + 50)
        rep.check(last + 50)
        assert health.read(tmp_path) is None
        assert "the drive acknowledges parts again" in caplog.text
        # errors again, with nothing acked for grace: back
        journal.note_error(job.id, "timed out", last + 51)
        rep.check(last + 79)
        assert health.read(tmp_path) is None
        rep.check(last + 81)
        assert health.read(tmp_path) == {"since": last + 50, "error": "timed out"}
        # a new try starts (its error cleared while it runs): still down, nothing was acked
        journal.set_state(job.id, "uploading")
        rep.check(last + 81.5)
        assert health.read(tmp_path) == {"since": last + 50, "error": "timed out"}
        # the job fails for good: nothing is retried, nothing is unreachable any more
        journal.set_state(job.id, "failed", "HTTP 413")
        rep.check(last + 82)
        assert health.read(tmp_path) is None
        assert rep.seen == {}
    finally:
        db.close()
