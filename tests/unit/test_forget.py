"""``panfs forget`` drops exactly what it said, as the journal is once the answer came: a
version whose bytes landed keeps its drive file (nothing doomed), and a job queued again
meanwhile is left alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from panfs import cli
from panfs.attrs import Attrs, AttrStore, drive_key, version_key
from panfs.commands.forget import _drop
from panfs.journal import Job, Journal
from panfs.metadata import open_db


def _setup(tmp_path: Path) -> tuple[Path, Path]:
    state = tmp_path / "state"
    (state / "data").mkdir(parents=True)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"cache:\n  dir: {state}\n")  # only cache.dir: it holds the state too
    return cfg, state


def _failed(journal: Journal, source: Path, name: str, *, landed: bool) -> Job:
    source.write_bytes(b"x" * 1000)
    job, _ = journal.add(source=str(source), parent_file_id="root", name=name,
                         remote_path="/" + name)  # fmt: skip
    if landed:
        journal.start_session(job.id, file_id="F-" + name, upload_id="u", part_size=1000,
                              parent_file_id="root", name=name)  # fmt: skip
        journal.mark_landed(job.id)
        assert journal.get(job.id).landed_at is not None  # type: ignore[union-attr]
    journal.set_state(job.id, "failed", "the move to its name was refused")
    got = journal.get(job.id)
    assert got is not None
    return got


def test_forget_of_a_landed_version_keeps_its_drive_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, state = _setup(tmp_path)
    db = open_db(state / "journal.db")
    try:
        journal, attrs = Journal(db), AttrStore(db)
        landed = _failed(journal, state / "data" / "1", "landed.bin", landed=True)
        cut = _failed(journal, state / "data" / "2", "cut.bin", landed=False)
        for job in (landed, cut):
            attrs.put(version_key(job.source), Attrs(0o600, 7, 7, 1, 2))
        assert cli.main(["forget", "--yes", "--config", str(cfg), "/landed.bin", "/cut.bin"]) == 0
        out = capsys.readouterr().out
        assert 'will forget "/landed.bin" (1000 B, failed: the move to its name was refused):' \
            " its bytes are on the drive, which keeps them" in out  # fmt: skip
        assert 'will forget the only copy of "/cut.bin" (1000 B, failed' in out
        assert 'forgotten: "/landed.bin"' in out
        assert 'forgotten: "/cut.bin"' in out
        # the landed file is the name on the drive: not doomed, not held by a superseded job
        assert journal.doomed() == []
        assert not journal.is_dead("F-landed.bin")
        assert journal.get(landed.id) is None
        assert journal.get(cut.id) is None
        assert not Path(landed.source).exists()
        assert not Path(cut.source).exists()
        # what cp -p set stays with the drive file; the dropped version's attributes go
        assert attrs.get(drive_key("F-landed.bin")) == Attrs(0o600, 7, 7, 1, 2)
        assert attrs.version_keys() == []
    finally:
        db.close()


def test_forget_leaves_a_job_queued_again_after_the_prompt(tmp_path: Path) -> None:
    _, state = _setup(tmp_path)
    db = open_db(state / "journal.db")
    try:
        journal = Journal(db)
        job = _failed(journal, state / "data" / "1", "f.bin", landed=False)
        assert journal.requeue_failed([job.id]) == [job.id]  # panfs retry, while forget asked
        assert _drop(journal, job.id) is None
        again = journal.get(job.id)
        assert again is not None
        assert again.state == "pending"
        # landed while forget asked: its row goes, its drive file is not doomed
        landed = _failed(journal, state / "data" / "2", "g.bin", landed=True)
        dropped = _drop(journal, landed.id)
        assert dropped is not None
        assert dropped.landed_at is not None
        assert journal.get(landed.id) is None
        assert journal.doomed() == []
    finally:
        db.close()
