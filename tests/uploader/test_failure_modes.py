"""``panfs upload`` converges through every upload failure mode of protocol §9.

Each test ends with the file on the server byte-identical to the source and bounds,
from the server's counters, how many part bytes were sent more than once.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.drive import DriveReader, DriveServer
from tests.support.procs import PANFS, stop, wait_for
from tests.uploader.conftest import MiB, Uploads, make_file, oss_error

SIZE = 5 * MiB + 12345


def _check(drive: DriveServer, src: Path, remote: str, resent_at_most: int) -> None:
    assert DriveReader(drive).read(remote) == src.read_bytes()
    received = drive.stats()["part_bytes_received"]
    assert received - src.stat().st_size <= resent_at_most, f"re-sent {received - SIZE}"


def _run(uploads: Any, tmp_path: Path, faults: list[dict[str, Any]], **upload: Any) -> Uploads:
    u: Uploads = uploads(**upload)
    src = make_file(tmp_path / "f.bin", SIZE)
    u.drive.set_faults(faults)
    u.run(src, "/up")
    return u


API_FAULTS = {
    "429": {
        "action": "status",
        "status": 429,
        "body": '{"code":"TooManyRequests"}',
        "content_type": "application/json",
        "headers": {"x-retry-after": "200"},
    },
    "502_text": {"action": "status", "status": 502, "body": "Bad Gateway"},
    "504_html": {
        "action": "status",
        "status": 504,
        "content_type": "text/html",
        "body": "<html><body><h1>504 Gateway Time-out</h1></body></html>",
    },
}


@pytest.mark.parametrize("kind", sorted(API_FAULTS))
@pytest.mark.parametrize("op", ["create", "complete", "getUploadUrl"])
def test_transient_api_answers_are_retried(
    uploads: Any, tmp_path: Path, kind: str, op: str
) -> None:
    rule = {"op": op, "times": 2, **API_FAULTS[kind]}
    # a margin as long as the URLs live makes every part ask getUploadUrl
    u = _run(uploads, tmp_path, [rule], url_margin=3600 if op == "getUploadUrl" else 300)
    _check(u.drive, tmp_path / "f.bin", "/up/f.bin", 0)
    assert u.drive.stats()["errors"].get(f"fault:{rule['status']}") == 2


def test_expired_access_token(drive_with_short_tokens: DriveServer, tmp_path: Path) -> None:
    u = Uploads(tmp_path, drive_with_short_tokens)
    src = make_file(tmp_path / "f.bin", SIZE)
    u.drive.set_faults([{"op": "put_part", "action": "delay", "ms": 400}])
    u.run(src, "/up")
    _check(u.drive, src, "/up/f.bin", 0)
    assert u.drive.stats()["requests"]["access_token"] >= 2  # refreshed on the way


def test_reused_refresh_token_is_a_clear_error_then_a_fresh_one_converges(
    uploads: Any, tmp_path: Path
) -> None:
    u: Uploads = uploads()
    src = make_file(tmp_path / "f.bin", SIZE)
    u.run(src, "/up")
    (u.cache / "token.json").unlink()  # the config's token was spent by the first run
    r = u.run(src, "/again", check=False)
    assert r.returncode == 2
    err = u.log.read_text()
    assert "put a fresh remote.refresh_token in the config" in err
    assert "Traceback" not in err
    # the user does what the line says; the same command then finishes, nothing re-sent
    cfg = yaml.safe_load(u.config.read_text())
    cfg["remote"]["refresh_token"] = u.drive.mint_refresh_token()
    u.config.write_text(yaml.safe_dump(cfg))
    u.run(src, "/again")
    assert DriveReader(u.drive).read("/again/f.bin") == src.read_bytes()
    assert u.drive.stats()["part_bytes_received"] == 2 * SIZE


def test_payload_too_large_text_stops_the_file_with_a_reason(
    drive_with_cap: DriveServer, tmp_path: Path
) -> None:
    u = Uploads(tmp_path, drive_with_cap)
    big = make_file(tmp_path / "big.bin", 3 * MiB)
    small = make_file(tmp_path / "small.bin", 1000)
    r = u.run(big, small, "/up", check=False)
    assert r.returncode == 3  # done, but a file needs attention (panfs.exitcodes)
    assert "Payload Too Large" in u.log.read_text() or "too large" in u.log.read_text()
    assert "Traceback" not in u.log.read_text()
    assert DriveReader(u.drive).read("/up/small.bin") == small.read_bytes()


@pytest.mark.parametrize(
    ("name", "rule", "resent"),
    [
        (
            "PartNotSequential",
            {
                "op": "put_part",
                "match": {"part_number": 3},
                "times": 1,
                **oss_error("PartNotSequential", 400),
            },
            0,
        ),
        (
            "lost_response",
            {
                "op": "put_part",
                "match": {"part_number": 2},
                "times": 1,
                "action": "drop_after_store",
            },
            0,
        ),
        (
            "PartAlreadyExist",
            {
                "op": "put_part",
                "match": {"part_number": 4},
                "times": 1,
                "action": "drop_after_store",
            },
            0,
        ),
        (
            "cut_body",
            {
                "op": "put_part",
                "match": {"part_number": 2},
                "times": 1,
                "action": "cut_body",
                "after_bytes": 300000,
            },
            MiB,
        ),
        (
            "truncated_part",
            {
                "op": "put_part",
                "match": {"part_number": 2},
                "times": 1,
                "action": "store_truncated",
                "keep_bytes": 400000,
            },
            MiB,
        ),
        (
            "NoSuchUpload",
            {
                "op": "put_part",
                "match": {"part_number": 3},
                "times": 1,
                **oss_error("NoSuchUpload", 404),
            },
            3 * MiB,
        ),
    ],
)
def test_part_failures_converge(
    uploads: Any, tmp_path: Path, name: str, rule: dict[str, Any], resent: int
) -> None:
    u = _run(uploads, tmp_path, [rule])
    _check(u.drive, tmp_path / "f.bin", "/up/f.bin", resent + MiB)
    assert u.drive.stats()["errors"] is not None


def test_expired_upload_url_is_refreshed(
    drive_with_short_urls: DriveServer, tmp_path: Path
) -> None:
    u = Uploads(tmp_path, drive_with_short_urls, url_margin=0.1)
    src = make_file(tmp_path / "f.bin", SIZE)
    u.drive.set_faults([{"op": "put_part", "action": "delay", "ms": 700}])
    u.run(src, "/up")
    _check(u.drive, src, "/up/f.bin", MiB)
    assert u.drive.stats()["requests"]["getUploadUrl"] >= 1


@pytest.mark.slow
def test_list_pagination_past_1000_parts(uploads: Any, tmp_path: Path) -> None:
    u: Uploads = uploads(part_size="100KiB")
    src = make_file(tmp_path / "f.bin", 1003 * 100 * 1024 + 7)
    u.drive.set_faults(
        [
            {
                "op": "put_part",
                "match": {"part_number": 1002},
                "times": 1,
                "action": "drop_after_store",
            }
        ]
    )
    u.run(src, "/up")
    _check(u.drive, src, "/up/f.bin", 0)
    assert u.drive.stats()["requests"]["listUploadedParts"] >= 11  # 1002 parts, 100 a page


def _complete_refusal(code: str, times: int) -> dict[str, Any]:
    return {
        "op": "complete",
        "times": times,
        "action": "status",
        "status": 400,
        "content_type": "application/json",
        "body": f'{{"code":"{code}","message":"injected complete check"}}',
    }


@pytest.mark.parametrize(
    "code", ["InvalidResource.PartList", "InvalidParameter.Size", "InvalidParameter.ContentHash"]
)
def test_complete_check_refused_once_converges(uploads: Any, tmp_path: Path, code: str) -> None:
    """A complete refused by one of its checks: re-list the parts, then complete again."""
    u = _run(uploads, tmp_path, [_complete_refusal(code, 1)])
    _check(u.drive, tmp_path / "f.bin", "/up/f.bin", 0)
    assert u.drive.stats()["requests"]["complete"] == 2
    assert u.drive.stats()["requests"]["listUploadedParts"] >= 1


def test_complete_refused_for_good_stops_the_file_with_the_reason(
    uploads: Any, tmp_path: Path
) -> None:
    u: Uploads = uploads()
    src = make_file(tmp_path / "f.bin", SIZE)
    u.drive.set_faults([_complete_refusal("InvalidResource.PartList", 100)])
    r = u.run(src, "/up", check=False)
    assert r.returncode == 3  # done, but the file needs attention (panfs.exitcodes)
    assert "InvalidResource.PartList" in u.log.read_text()
    assert u.drive.stats()["part_bytes_received"] == SIZE  # refused, never re-sent blindly
    assert DriveReader(u.drive).get("/up/f.bin") is None  # never visible incomplete


def test_lost_complete_answer_is_confirmed_not_redone(uploads: Any, tmp_path: Path) -> None:
    """complete landed but its answer was lost: the retry gets NotFound.UploadId, and the
    file itself (size and SHA-1) proves the upload finished."""
    u = _run(uploads, tmp_path, [{"op": "complete", "times": 1, "action": "drop_after_store"}])
    _check(u.drive, tmp_path / "f.bin", "/up/f.bin", 0)
    assert u.drive.stats()["requests"]["complete"] == 2


def _killed_after_parts(u: Uploads, src: Path, parts: int) -> None:
    """Run ``panfs upload`` and have it SIGKILL itself once ``parts`` parts are journaled."""
    r = u.run(src, "/up", check=False, env={"PANFS_CRASH_AT": f"after_part_ack:{parts + 1}"})
    assert r.returncode == -signal.SIGKILL
    assert u.drive.stats()["parts_stored"] == parts + 1


def _journaled_parts(u: Uploads) -> int:
    (path,) = u.cache.glob("uploads/*/journal.db")  # the command's own journal
    db = sqlite3.connect(path)
    try:
        return int(db.execute("SELECT count(*) FROM parts").fetchone()[0])
    finally:
        db.close()


def test_resume_after_session_expired_on_server(
    drive_with_short_sessions: DriveServer, tmp_path: Path
) -> None:
    """The origin bug: the journal's session is gone on the server. A new one, no loop."""
    u = Uploads(tmp_path, drive_with_short_sessions)
    src = make_file(tmp_path / "f.bin", SIZE)
    _killed_after_parts(u, src, 2)
    time.sleep(2.2)  # the session expires on the server
    u.run(src, "/up")
    assert DriveReader(u.drive).read("/up/f.bin") == src.read_bytes()
    # everything goes again in a new session: the old parts are gone with the old session
    assert u.drive.stats()["part_bytes_received"] == 3 * MiB + SIZE


def test_journal_behind_the_server_by_one_part(uploads: Any, tmp_path: Path) -> None:
    """The server acknowledged part 3, the journal never recorded it: the part is verified
    against the local bytes and adopted, not sent again (no PartAlreadyExist loop)."""
    u: Uploads = uploads()
    src = make_file(tmp_path / "f.bin", SIZE)
    _killed_after_parts(u, src, 2)
    assert _journaled_parts(u) == 2  # the server has 3
    u.run(src, "/up")
    _check(u.drive, src, "/up/f.bin", 0)


def test_source_changed_between_runs_starts_a_new_session(uploads: Any, tmp_path: Path) -> None:
    """Same path, same size, same mtime, new bytes in place: never a mix of old and new."""
    u: Uploads = uploads()
    src = make_file(tmp_path / "f.bin", SIZE)
    _killed_after_parts(u, src, 2)
    st = src.stat()
    with open(src, "r+b") as f:  # rewrite in place: the inode stays
        f.write(os.urandom(SIZE))
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))
    u.run(src, "/up")
    assert DriveReader(u.drive).read("/up/f.bin") == src.read_bytes()
    assert u.drive.stats()["part_bytes_received"] == 3 * MiB + SIZE


def test_journal_from_another_file_of_the_same_size(uploads: Any, tmp_path: Path) -> None:
    """The path now holds another file of the same size and mtime (moved over it): the
    journal's session belongs to the old one and must not be continued."""
    u: Uploads = uploads()
    src = make_file(tmp_path / "f.bin", SIZE)
    _killed_after_parts(u, src, 2)
    other = make_file(tmp_path / "other.bin", SIZE)
    os.utime(other, ns=(src.stat().st_atime_ns, src.stat().st_mtime_ns))
    os.replace(other, src)
    u.run(src, "/up")
    assert DriveReader(u.drive).read("/up/f.bin") == src.read_bytes()
    assert u.drive.stats()["part_bytes_received"] == 3 * MiB + SIZE


def test_rapid_upload_sends_no_bytes(uploads: Any, tmp_path: Path) -> None:
    u: Uploads = uploads(rapid_upload=True, rapid_threshold="1MiB")
    src = make_file(tmp_path / "f.bin", SIZE)
    u.run(src, "/one")
    sent = u.drive.stats()["part_bytes_received"]
    copy = tmp_path / "copy.bin"
    copy.write_bytes(src.read_bytes())
    u.run(copy, "/two")
    assert u.drive.stats()["part_bytes_received"] == sent  # the drive had the content
    assert u.drive.stats()["errors"].get("PreHashMatched") == 1
    assert DriveReader(u.drive).read("/two/copy.bin") == src.read_bytes()


@pytest.fixture
def drive_with_quota(tmp_path: Path) -> Any:
    s = DriveServer(tmp_path / "d-quota", "--quota", "3MiB")
    try:
        yield s
    finally:
        s.close()


def test_quota_stops_the_file_with_a_reason_and_keeps_it(
    drive_with_quota: DriveServer, tmp_path: Path
) -> None:
    """A permanent failure: that file stops, with the drive's reason in the journal and in
    status; other files go on; nothing local is deleted."""
    u = Uploads(tmp_path, drive_with_quota)
    big = make_file(tmp_path / "big.bin", SIZE)
    small = make_file(tmp_path / "small.bin", 1000)
    before = big.read_bytes()
    r = u.run(big, small, "/up", check=False)
    assert r.returncode == 3  # done, but a file needs attention (panfs.exitcodes)
    assert DriveReader(u.drive).read("/up/small.bin") == small.read_bytes()
    assert big.read_bytes() == before
    status = subprocess.run(
        [*PANFS, "status", "--json", "--config", str(u.config)], capture_output=True, text=True
    )
    files = {f["path"]: f for f in json.loads(status.stdout)["files"]}
    assert files["/up/big.bin"]["state"] == "failed"
    assert "QuotaExhausted" in files["/up/big.bin"]["error"]
    assert "Traceback" not in u.log.read_text()


def test_transient_failure_is_retried_visibly(uploads: Any, tmp_path: Path) -> None:
    """The drive answers 503 for a while: status shows the last error and the next retry,
    and the upload finishes once the drive is back."""
    u: Uploads = uploads()
    src = make_file(tmp_path / "f.bin", SIZE)
    u.drive.set_faults(
        [{"op": "put_part", "match": {"part_number": 2}, "action": "status", "status": 503,
          "body": "Service Unavailable", "times": 3}]
    )  # fmt: skip
    with open(u.log, "a") as err:
        p = subprocess.Popen(
            [*PANFS, "upload", "--json", "--config", str(u.config), str(src), "/up"],
            stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip
    try:
        seen: dict[str, Any] = {}

        def retrying() -> bool:
            r = subprocess.run(
                [*PANFS, "status", "--json", "--config", str(u.config)],
                capture_output=True, text=True,
            )  # fmt: skip
            files = json.loads(r.stdout)["files"] if r.returncode == 0 else []
            hits = [f for f in files if f.get("error") and f.get("next_retry_at")]
            if hits:
                seen.update(hits[0])
            return bool(hits)

        wait_for(retrying, "a visible retry", p, limit=60)
        assert "503" in seen["error"]
        assert seen["state"] == "uploading"
        assert p.wait(120) == 0
    finally:
        stop(p)
    _check(u.drive, src, "/up/f.bin", 3 * MiB)  # the three refused bodies were read


@pytest.mark.parametrize(
    ("listing", "resent"),
    [
        ("full", 0),  # the lost part is listed with its MD5: verified, adopted
        ("no-size", 0),
        ("no-etag", 2 * MiB),  # nothing to verify it by: a new session, once (parts 1-2 again)
        ("bare", 2 * MiB),
    ],
)
def test_lost_part_answer_under_each_parts_listing(
    listing: str, resent: int, tmp_path: Path
) -> None:
    with DriveServer(tmp_path / "d", "--parts-listing", listing) as drive:
        u = Uploads(tmp_path, drive)
        src = make_file(tmp_path / "f.bin", SIZE)
        drive.set_faults(
            [{"op": "put_part", "match": {"part_number": 2}, "action": "drop_after_store",
              "times": 1}]
        )  # fmt: skip
        u.run(src, "/up")
        _check(drive, src, "/up/f.bin", resent)
        assert drive.stats()["part_bytes_received"] == SIZE + resent


@pytest.mark.parametrize("kind", ["empty", "rapid"])
def test_lost_answer_of_a_create_that_makes_the_file_leaves_one_copy(
    uploads: Any, tmp_path: Path, kind: str
) -> None:
    """An empty file's create, and a rapid upload's, make the file at once: their answer
    lost, the create is not sent blind again (a second copy of the name); the file it made
    is found and adopted."""
    u: Uploads = uploads(rapid_upload=True, rapid_threshold="1MiB")
    src = tmp_path / "f.bin"
    if kind == "empty":
        src.write_bytes(b"")
        rule = {"op": "create", "times": 1, "action": "drop_after_store", "match": {"type": "file"}}
    else:
        make_file(src, SIZE)
        u.run(src, "/one")  # the drive has the content: /two's create is a rapid upload
        rule = {"op": "create", "times": 1, "action": "drop_after_store",
                "match": {"proof_version": "v1"}}  # fmt: skip

    def creates() -> int:  # folders' and files' creates
        return int(u.drive.stats()["requests"].get("create", 0))

    before = creates()
    u.run(src, "/control")  # the same upload, nothing lost
    control = creates() - before
    u.drive.set_faults([rule])
    before = creates()
    u.run(src, "/two")
    assert creates() - before == control  # the create whose answer was lost: not sent again
    names = [i["name"] for i in DriveReader(u.drive).list("/two")]
    assert names == ["f.bin"]
    assert DriveReader(u.drive).read("/two/f.bin") == src.read_bytes()
    assert [r["fired"] for r in u.drive.admin("GET", "/admin/faults")] == [1]
