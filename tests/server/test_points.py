"""One conformance test per numbered point of the drive server's definition."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import yaml

from panfs.server.store import Store
from tests.server.conftest import Api
from tests.support.drive import DriveServer


def test_point_1_open_api_endpoints(api: Api) -> None:
    folder = api.ok(
        "openFile/create",
        {"parent_file_id": "root", "name": "docs", "type": "folder", "check_name_mode": "refuse"},
    )
    again = api.ok(
        "openFile/create",
        {"parent_file_id": "root", "name": "docs", "type": "folder", "check_name_mode": "refuse"},
    )
    assert again["exist"] is True
    assert again["file_id"] == folder["file_id"]
    f = api.upload("a.txt", [b"hello"], parent=folder["file_id"])
    assert f["content_hash"] == hashlib.sha1(b"hello").hexdigest().upper()
    assert api.ok("openFile/get_by_path", {"file_path": "/docs/a.txt"})["file_id"] == f["file_id"]
    assert api.ok("openFile/get", {"file_id": f["file_id"]})["size"] == 5
    renamed = api.ok("openFile/update", {"file_id": f["file_id"], "name": "b.txt"})
    assert renamed["name"] == "b.txt"
    moved = api.ok("openFile/move", {"file_id": f["file_id"], "to_parent_file_id": "root"})
    assert moved["exist"] is False
    listing = api.ok("openFile/list", {"parent_file_id": "root", "limit": 1000})
    assert sorted(i["name"] for i in listing["items"]) == ["b.txt", "docs"]
    assert listing["next_marker"] == ""
    space = api.ok("user/getSpaceInfo", {})["personal_space_info"]
    assert space["used_size"] == 5
    info = api.ok("user/getDriveInfo", {})
    assert info["default_drive_id"] == api.drive_id
    api.ok("openFile/delete", {"file_id": f["file_id"]})
    assert api.call("openFile/get", {"file_id": f["file_id"]}).status_code == 404
    r = api.call(
        "openFile/create",
        {
            "parent_file_id": "root",
            "name": "x",
            "type": "file",
            "size": 1,
            "check_name_mode": "overwrite",
        },
    )
    assert r.json()["code"] == "InvalidParameter.CheckNameMode"


def test_point_2_upload_host(api: Api) -> None:
    c = api.create("p.bin", 200 * 1024, 2)
    a = b"a" * (100 * 1024)
    r = httpx.put(c["part_info_list"][0]["upload_url"], content=a)
    assert r.status_code == 200
    assert r.headers["etag"] == f'"{hashlib.md5(a).hexdigest().upper()}"'
    assert r.content == b""
    r = httpx.put(c["part_info_list"][1]["upload_url"], content=b"b" * (100 * 1024))
    assert r.status_code == 200
    api.ok("openFile/complete", {"file_id": c["file_id"], "upload_id": c["upload_id"]})


def test_point_3_failure_modes_are_reachable() -> None:
    """Each §9 mode has its own test in test_failure_modes.py: this keeps the list complete."""
    names = Path(__file__).with_name("test_failure_modes.py").read_text()
    for i in range(1, 24):
        assert f"def test_9_{i:02d}_" in names, f"no test for failure mode {i}"


def test_point_4_fault_rules_from_file_and_admin(tmp_path: Path) -> None:
    rules = tmp_path / "faults.yaml"
    rules.write_text(
        yaml.safe_dump(
            [{"op": "list", "action": "status", "status": 502, "body": "Bad Gateway", "times": 1}]
        )
    )
    with DriveServer(tmp_path / "d", "--faults", str(rules), "--no-rate-limits") as drive:
        api = Api(drive)
        assert api.call("openFile/list", {"parent_file_id": "root"}).status_code == 502
        assert api.call("openFile/list", {"parent_file_id": "root"}).status_code == 200  # times
        drive.set_faults(
            [{"op": "list", "action": "status", "status": 504, "body": "x", "probability": 0.5}]
        )
        seen = [
            api.call("openFile/list", {"parent_file_id": "root"}).status_code for _ in range(20)
        ]
        assert 504 in seen
        assert 200 in seen
        drive.set_faults([])
        assert api.call("openFile/list", {"parent_file_id": "root"}).status_code == 200
        bad = httpx.post(
            f"{drive.url}/admin/faults",
            json=[{"op": "list", "action": "explode"}],
            headers={"Authorization": f"Bearer {drive.account['admin_token']}"},
        )
        assert bad.status_code == 400


def test_point_5_counters(api: Api) -> None:
    drive = api.server
    drive.reset_stats()
    api.upload("c.bin", [b"z" * 1000])
    s = drive.stats()
    assert s["requests"]["create"] == 1
    assert s["requests"]["put_part"] == 1
    assert s["part_bytes_received"] == 1000
    assert s["part_bytes_stored"] == 1000
    assert s["parts_stored"] == 1
    drive.reset_stats()
    assert drive.stats()["part_bytes_received"] == 0
    assert httpx.get(f"{drive.url}/admin/stats").status_code == 401


def test_point_6_storage_on_disk(api: Api) -> None:
    f = api.upload("s.bin", [b"q" * 5000])
    root = api.server.root
    assert (root / "blobs" / f["file_id"]).read_bytes() == b"q" * 5000
    api.server.restart()
    again = Api(api.server)
    assert again.ok("openFile/get", {"file_id": f["file_id"]})["size"] == 5000


def test_point_7_bootstrap(tmp_path: Path) -> None:
    with DriveServer(tmp_path / "d") as drive:
        acct_file = tmp_path / "d" / "account.yaml"
        assert stat.S_IMODE(acct_file.stat().st_mode) == 0o600
        acct = yaml.safe_load(acct_file.read_text())
        assert set(acct) == {
            "endpoint",
            "client_id",
            "client_secret",
            "refresh_token",
            "admin_token",
        }
        assert acct["endpoint"] == drive.url
        assert drive.port != 0
        a, b = drive.mint_refresh_token(), drive.mint_refresh_token()
        assert a != b
        api = Api(drive)
        assert api.token(acct["refresh_token"]).status_code == 200


def test_point_8_safe_by_default(api: Api) -> None:
    assert api.url.startswith("http://127.0.0.1:")
    for name in ("a/b", "", "n" * 1025):
        r = api.call(
            "openFile/create", {"parent_file_id": "root", "name": name, "type": "file", "size": 1}
        )
        assert r.status_code == 400
        assert r.json()["code"] == "InvalidParameter.Name"
    c = api.create("f", 1, 1)
    url = c["part_info_list"][0]["upload_url"]
    forged = url.replace("x-oss-expires=", "x-oss-expires=9")
    assert httpx.put(forged, content=b"x").status_code == 403


def test_point_9_store_works_alone(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    folder = store.add_file("root", "f", "folder")
    assert store.find("root", "f") == folder
    sess = store.new_session("fid", 10, 1, "")
    assert store.session(sess.upload_id) is not None
    assert store.parts(sess.upload_id) == []
    store.db.close()


def test_serve_warns_off_loopback_and_rejects_bad_fault_file(tmp_path: Path) -> None:
    bad = tmp_path / "f.yaml"
    bad.write_text("- {op: list, action: nope}\n")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "panfs",
            "serve",
            "--root",
            str(tmp_path / "r"),
            "--faults",
            str(bad),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env=dict(os.environ),
    )
    assert r.returncode == 2
    assert "--faults" in r.stderr
    assert "Traceback" not in r.stderr
