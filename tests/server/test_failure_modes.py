"""Every failure mode of protocol §9, over real HTTP on loopback, one test each."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import time
from typing import Any

import httpx
import pytest

from tests.server.conftest import Api
from tests.support.drive import DriveServer

KB = 1024
P = 100 * KB  # the smallest allowed non-last part


def _xml_code(r: httpx.Response) -> str:
    assert r.headers["content-type"].startswith("application/xml")
    return r.text.split("<Code>")[1].split("</Code>")[0]


def test_9_01_expired_access_token(drive_with: Any) -> None:
    api = Api(drive_with("--access-token-lifetime", "1"))
    time.sleep(1.2)
    r = api.call("user/getDriveInfo", {})
    assert r.status_code == 401
    assert r.json()["code"] == "AccessTokenExpired"
    assert r.json()["message"] == "token expired"
    assert "requestId" in r.json()


def test_9_02_invalid_token(api: Api) -> None:
    r = api.call("user/getDriveInfo", {}, token="garbage")
    assert r.status_code == 401
    assert r.json()["code"] == "AccessTokenInvalid"


def test_9_03_refresh_token_reuse(api: Api, drive_with: Any) -> None:
    fresh = api.server.mint_refresh_token()
    first = api.token(fresh)
    assert first.status_code == 200
    assert first.json()["refresh_token"] != fresh  # rotated
    again = api.token(fresh)
    assert again.status_code == 401
    assert again.json()["code"] == "RefreshTokenInvalid"
    old_access = first.json()["access_token"]
    api.token(first.json()["refresh_token"])
    assert api.call("user/getDriveInfo", {}, token=old_access).status_code == 200
    short = drive_with("--refresh-token-lifetime", "1")
    tok = short.mint_refresh_token()
    time.sleep(1.2)
    r = (
        Api.token(Api.__new__(Api), tok)
        if False
        else httpx.post(
            f"{short.url}/oauth/access_token",
            json={
                "client_id": short.account["client_id"],
                "client_secret": short.account["client_secret"],
                "grant_type": "refresh_token",
                "refresh_token": tok,
            },
        )
    )
    assert r.status_code == 401
    assert r.json()["code"] == "RefreshTokenExpired"


def test_9_04_rate_limit(drive_with: Any) -> None:
    api = Api(drive_with("--rate-limit", "list=1/2"))
    codes = [api.call("openFile/list", {"parent_file_id": "root"}) for _ in range(4)]
    limited = [r for r in codes if r.status_code == 429]
    assert limited
    assert limited[0].json()["code"] == "TooManyRequests"
    assert int(limited[0].headers["x-retry-after"]) > 0


@pytest.mark.parametrize(
    ("status", "body", "ctype"),
    [
        (502, "Bad Gateway", "text/plain"),
        (504, "<html><body>504 Gateway Time-out</body></html>", "text/html"),
        (413, "Payload Too Large", "text/plain"),
    ],
)
def test_9_05_gateway_garbage(api: Api, status: int, body: str, ctype: str) -> None:
    api.server.set_faults(
        [
            {
                "op": "create",
                "action": "status",
                "status": status,
                "body": body,
                "content_type": ctype,
                "times": 1,
            }
        ]
    )
    r = api.call(
        "openFile/create", {"parent_file_id": "root", "name": "x", "type": "file", "size": 1}
    )
    assert r.status_code == status
    assert r.text == body
    assert r.headers["content-type"].startswith(ctype)
    assert (
        api.call(
            "openFile/create", {"parent_file_id": "root", "name": "x", "type": "file", "size": 1}
        ).status_code
        == 200
    )


def test_9_05_payload_too_large_by_size_cap(drive_with: Any) -> None:
    api = Api(drive_with("--max-file-size", "1MiB"))
    r = api.call(
        "openFile/create",
        {"parent_file_id": "root", "name": "big", "type": "file", "size": 2 << 20},
    )
    assert r.status_code == 413
    assert r.text == "Payload Too Large"


def test_9_06_too_many_parts(api: Api) -> None:
    r = api.call(
        "openFile/create",
        {
            "parent_file_id": "root",
            "name": "x",
            "type": "file",
            "size": 1,
            "part_info_list": [{"part_number": i} for i in range(1, 10002)],
        },
    )
    assert r.status_code == 400
    assert r.json()["code"] == "InvalidParameter.PartInfoList"
    assert "10000" in r.json()["message"]


def test_9_07_name_conflicts(api: Api) -> None:
    api.upload("a.txt", [b"1"])
    refuse = api.create("a.txt", 1, check_name_mode="refuse")
    assert refuse["exist"] is True
    assert refuse["upload_id"] == ""
    renamed = api.create("a.txt", 1, check_name_mode="auto_rename")
    assert renamed["file_name"] == "a(1).txt"
    ignored = api.create("a.txt", 1, check_name_mode="ignore")
    assert ignored["file_name"] == "a.txt"
    b = api.upload("b.txt", [b"2"])
    r = api.call(
        "openFile/update", {"file_id": b["file_id"], "name": "a.txt", "check_name_mode": "refuse"}
    )
    assert r.status_code == 400
    assert r.json()["code"] == "AlreadyExist.File"


def test_9_08_pre_hash_and_rapid_upload(api: Api) -> None:
    data = bytes(range(256)) * 800
    api.upload("orig.bin", [data])
    pre = hashlib.sha1(data[:1024]).hexdigest()
    r = api.call(
        "openFile/create",
        {
            "parent_file_id": "root",
            "name": "copy.bin",
            "type": "file",
            "size": len(data),
            "pre_hash": pre,
        },
    )
    assert r.status_code == 409
    assert r.json()["code"] == "PreHashMatched"
    sha1 = hashlib.sha1(data).hexdigest().upper()
    start = int(hashlib.md5(api.access.encode()).hexdigest()[:16], 16) % len(data)
    proof = base64.b64encode(data[start : start + 8]).decode()
    body = {
        "parent_file_id": "root",
        "name": "copy.bin",
        "type": "file",
        "size": len(data),
        "content_hash": sha1,
        "content_hash_name": "sha1",
        "proof_version": "v1",
    }
    bad = api.call("openFile/create", {**body, "proof_code": "AAAA"})
    assert bad.status_code == 400
    assert bad.json()["code"] == "InvalidRapidProof"
    ok = api.ok("openFile/create", {**body, "proof_code": proof})
    assert ok["rapid_upload"] is True
    assert ok["part_info_list"] == []
    got = api.ok("openFile/get", {"file_id": ok["file_id"]})
    assert got["content_hash"] == sha1
    assert api.server.stats()["part_bytes_received"] == len(data)  # only the original's bytes


def test_9_09_part_out_of_order(api: Api) -> None:
    c = api.create("f", 3 * P, 3)
    r = httpx.put(c["part_info_list"][1]["upload_url"], content=b"x" * P)
    assert r.status_code == 400
    assert _xml_code(r) == "PartNotSequential"
    assert "<PartNumber>2</PartNumber>" in r.text


def test_9_10_part_re_upload(api: Api) -> None:
    c = api.create("f", 2 * P, 2)
    url = c["part_info_list"][0]["upload_url"]
    first = httpx.put(url, content=b"a" * P)
    again = httpx.put(url, content=b"b" * P)
    assert again.status_code == 409
    assert _xml_code(again) == "PartAlreadyExist"
    assert f"<ETag>{first.headers['etag']}</ETag>" in again.text
    parts = api.ok(
        "openFile/listUploadedParts", {"file_id": c["file_id"], "upload_id": c["upload_id"]}
    )
    assert parts["uploaded_parts"][0]["etag"] == first.headers["etag"]  # never replaced


async def test_9_11_concurrent_puts(api: Api) -> None:
    import trio

    c = api.create("f", 2 * P, 2)
    api.server.set_faults(
        [{"op": "put_part", "match": {"part_number": 1}, "action": "delay", "ms": 300}]
    )
    results: dict[int, int] = {}
    async with httpx.AsyncClient() as http:

        async def put(i: int) -> None:
            r = await http.put(c["part_info_list"][i - 1]["upload_url"], content=b"z" * P)
            results[i] = r.status_code

        async with trio.open_nursery() as n:
            n.start_soon(put, 1)
            await trio.sleep(0.1)
            n.start_soon(put, 2)
    assert results == {1: 200, 2: 400}


def test_9_12_expired_upload_url(drive_with: Any) -> None:
    api = Api(drive_with("--upload-url-lifetime", "1"))
    c = api.create("f", 10, 1)
    time.sleep(2.1)
    r = httpx.put(c["part_info_list"][0]["upload_url"], content=b"x" * 10)
    assert r.status_code == 403
    assert _xml_code(r) == "AccessDenied"
    assert "Request has expired." in r.text
    assert "<ServerTime>" in r.text


def test_9_13_bad_signature(api: Api) -> None:
    c = api.create("f", 10, 1)
    url = c["part_info_list"][0]["upload_url"]
    r = httpx.put(url, content=b"x" * 10, headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 403
    assert _xml_code(r) == "SignatureDoesNotMatch"
    r = httpx.put(url.replace("partNumber=1", "partNumber=2"), content=b"x" * 10)
    assert _xml_code(r) == "SignatureDoesNotMatch"


def test_9_14_unknown_or_finished_session(api: Api, drive_with: Any) -> None:
    c = api.create("f", 10, 1)
    assert httpx.put(c["part_info_list"][0]["upload_url"], content=b"x" * 10).status_code == 200
    ids = {"file_id": c["file_id"], "upload_id": c["upload_id"]}
    api.ok("openFile/complete", ids)
    r = httpx.put(c["part_info_list"][0]["upload_url"], content=b"x" * 10)
    assert r.status_code == 404
    assert _xml_code(r) == "NoSuchUpload"
    for op in ("openFile/complete", "openFile/listUploadedParts"):
        r = api.call(op, ids)
        assert r.status_code == 400
        assert r.json()["code"] == "NotFound.UploadId"
    other = Api(drive_with("--upload-id-status", "404"))
    r = other.call("openFile/listUploadedParts", {"file_id": "x", "upload_id": "y"})
    assert r.status_code == 404
    assert r.json()["code"] == "NotFound.UploadId"


def test_9_15_partial_part(api: Api) -> None:
    c = api.create("f", 2 * P + 10, 3)
    api.server.set_faults(
        [
            {
                "op": "put_part",
                "match": {"part_number": 1},
                "action": "cut_body",
                "after_bytes": 50 * KB,
                "times": 1,
            }
        ]
    )
    with pytest.raises(httpx.TransportError):
        httpx.put(c["part_info_list"][0]["upload_url"], content=b"a" * P)
    ids = {"file_id": c["file_id"], "upload_id": c["upload_id"]}
    assert api.ok("openFile/listUploadedParts", ids)["uploaded_parts"] == []  # discarded
    api.server.set_faults(
        [
            {
                "op": "put_part",
                "match": {"part_number": 1},
                "action": "store_truncated",
                "keep_bytes": 60 * KB,
                "times": 1,
            }
        ]
    )
    r = httpx.put(c["part_info_list"][0]["upload_url"], content=b"a" * P)
    assert r.status_code == 200
    parts = api.ok("openFile/listUploadedParts", ids)["uploaded_parts"]
    assert parts[0]["part_size"] == 60 * KB


def test_9_16_lost_response(api: Api) -> None:
    c = api.create("f", P, 1)
    api.server.set_faults([{"op": "put_part", "action": "drop_after_store", "times": 1}])
    with pytest.raises(httpx.TransportError):
        httpx.put(c["part_info_list"][0]["upload_url"], content=b"q" * P)
    r = httpx.put(c["part_info_list"][0]["upload_url"], content=b"q" * P)
    assert r.status_code == 409
    assert _xml_code(r) == "PartAlreadyExist"
    assert api.server.stats()["parts_stored"] == 1


def test_9_17_list_pagination(drive_with: Any) -> None:
    api = Api(drive_with("--parts-page-size", "3", "--list-page-size", "4", "--min-part-size", "1"))
    c = api.create("f", 7, 7)
    for info in c["part_info_list"]:
        assert httpx.put(info["upload_url"], content=b"p").status_code == 200
    ids = {"file_id": c["file_id"], "upload_id": c["upload_id"]}
    seen, marker, pages = [], "", 0
    while True:
        page = api.ok("openFile/listUploadedParts", {**ids, "part_number_marker": marker})
        pages += 1
        seen += [p["part_number"] for p in page["uploaded_parts"]]
        marker = page["next_part_number_marker"]
        assert isinstance(marker, str)
        if not marker:
            break
    assert seen == list(range(1, 8))
    assert pages == 3
    for i in range(9):
        api.upload(f"n{i}", [b"x"])
    names, marker = [], ""
    while True:
        page = api.ok("openFile/list", {"parent_file_id": "root", "limit": 200, "marker": marker})
        assert len(page["items"]) <= 4
        names += [i["name"] for i in page["items"]]
        marker = page["next_marker"]
        if not marker:
            break
    assert len(names) == 9


def test_9_18_complete_checks(api: Api, drive_with: Any) -> None:
    c = api.create("f", 20 * KB + 5, 2)
    ids = {"file_id": c["file_id"], "upload_id": c["upload_id"]}
    httpx.put(c["part_info_list"][0]["upload_url"], content=b"a" * 20 * KB)
    httpx.put(c["part_info_list"][1]["upload_url"], content=b"b" * 5)
    r = api.call("openFile/complete", ids)
    assert r.json()["code"] == "InvalidResource.PartList"
    assert "part entity too small" in r.json()["message"]
    c = api.create("g", 100, 1)
    ids = {"file_id": c["file_id"], "upload_id": c["upload_id"]}
    httpx.put(c["part_info_list"][0]["upload_url"], content=b"g" * 60)
    r = api.call("openFile/complete", ids)
    assert r.status_code == 400
    assert r.json()["code"] == "InvalidParameter.Size"
    c = api.create("h", 3, 1, content_hash="0" * 40, content_hash_name="sha1", proof_code="")
    ids = {"file_id": c["file_id"], "upload_id": c["upload_id"]}
    httpx.put(c["part_info_list"][0]["upload_url"], content=b"hhh")
    assert api.call("openFile/complete", ids).json()["code"] == "InvalidParameter.ContentHash"
    done = api.upload("ok", [b"o" * P, b"k"])
    assert done["content_hash"] == hashlib.sha1(b"o" * P + b"k").hexdigest().upper()
    lenient = Api(drive_with("--lenient-complete"))
    c = lenient.create("l", 100, 1)
    httpx.put(c["part_info_list"][0]["upload_url"], content=b"l" * 60)
    f = lenient.ok("openFile/complete", {"file_id": c["file_id"], "upload_id": c["upload_id"]})
    assert f["size"] == 60


def test_9_19_get_upload_url_edge_cases(api: Api) -> None:
    c = api.create("f", 10, 1)
    ids = {"file_id": c["file_id"], "upload_id": c["upload_id"]}
    r = api.call("openFile/getUploadUrl", {**ids, "part_info_list": []})
    assert r.json()["code"] == "InvalidParameter.PartInfoList"
    far = api.ok("openFile/getUploadUrl", {**ids, "part_info_list": [{"part_number": 9999}]})
    assert far["part_info_list"][0]["part_number"] == 9999
    data = b"rapid" * 30000
    api.upload("src", [data])
    sha1 = hashlib.sha1(data).hexdigest().upper()
    start = int(hashlib.md5(api.access.encode()).hexdigest()[:16], 16) % len(data)
    rapid = api.ok(
        "openFile/create",
        {
            "parent_file_id": "root",
            "name": "dup",
            "type": "file",
            "size": len(data),
            "content_hash": sha1,
            "content_hash_name": "sha1",
            "proof_version": "v1",
            "proof_code": base64.b64encode(data[start : start + 8]).decode(),
        },
    )
    r = api.call(
        "openFile/getUploadUrl",
        {"file_id": rapid["file_id"], "upload_id": "X", "part_info_list": [{"part_number": 1}]},
    )
    assert r.json()["code"] == "AlreadyExist.File"


def test_9_20_not_found(api: Api) -> None:
    assert api.call("openFile/get", {"file_id": "nope"}).json()["code"].startswith("NotFound")
    r = api.call("openFile/get_by_path", {"file_path": "/missing"})
    assert r.status_code == 404
    r = api.call("openFile/getDownloadUrl", {"file_id": "nope"})
    assert r.json()["code"] == "NotFound.FileId"
    r = api.call("openFile/list", {"parent_file_id": "nope"})
    assert r.status_code == 404
    assert r.json()["code"] == "NotFound.ParentFileId"
    r = httpx.post(
        f"{api.url}/adrive/v1.0/openFile/list",
        json={"parent_file_id": "root"},
        headers={"Authorization": f"Bearer {api.access}"},
    )
    assert r.status_code == 400
    assert r.json()["code"] == "BadRequest"


def test_9_21_download(api: Api, drive_with: Any) -> None:
    data = bytes(range(256)) * 1000
    f = api.upload("d.bin", [data])
    url = api.ok("openFile/getDownloadUrl", {"file_id": f["file_id"]})["url"]
    assert httpx.get(url).content == data
    r = httpx.get(url, headers={"Range": "bytes=1000-1999"})
    assert r.status_code == 206
    assert r.content == data[1000:2000]
    assert r.headers["content-range"] == f"bytes 1000-1999/{len(data)}"
    short = Api(drive_with("--download-url-lifetime", "1", "--download-url-style", "OSS4"))
    g = short.upload("e", [b"e"])
    url = short.ok("openFile/getDownloadUrl", {"file_id": g["file_id"]})["url"]
    assert "x-oss-date=" in url
    time.sleep(2.1)
    r = httpx.get(url)
    assert r.status_code == 403
    assert _xml_code(r) == "AccessDenied"


def test_9_22_quota(drive_with: Any) -> None:
    api = Api(drive_with("--quota", "1MiB"))
    r = api.call(
        "openFile/create", {"parent_file_id": "root", "name": "q", "type": "file", "size": 2 << 20}
    )
    assert r.status_code == 400
    assert r.json()["code"] == "QuotaExhausted.Drive"
    space = api.ok("user/getSpaceInfo", {})["personal_space_info"]
    assert space["total_size"] == 1 << 20


def test_9_23_trash_semantics(api: Api) -> None:
    f = api.upload("t.txt", [b"t"])
    api.ok("openFile/recyclebin/trash", {"file_id": f["file_id"]})
    names = [i["name"] for i in api.ok("openFile/list", {"parent_file_id": "root"})["items"]]
    assert "t.txt" not in names
    assert api.call("openFile/get_by_path", {"file_path": "/t.txt"}).status_code == 404
    r = api.call("openFile/get", {"file_id": f["file_id"]})
    assert r.json()["code"] == "ForbiddenFileInTheRecycleBin"
    assert api.call("openFile/recyclebin/trash", {"file_id": f["file_id"]}).status_code == 404


def test_server_killed_mid_part_keeps_acknowledged_parts(drive: DriveServer) -> None:
    api = Api(drive)
    c = api.create("k", 3 * P, 3)
    first = httpx.put(c["part_info_list"][0]["upload_url"], content=b"1" * P)
    assert first.status_code == 200
    drive.set_faults(
        [{"op": "put_part", "match": {"part_number": 2}, "action": "delay", "ms": 5000}]
    )
    import threading

    t = threading.Thread(
        target=lambda: _swallow(httpx.put, c["part_info_list"][1]["upload_url"], content=b"2" * P)
    )
    t.start()
    time.sleep(0.5)
    drive.restart()  # SIGKILL mid-part, same root and port
    t.join()
    api2 = Api(drive)
    parts = api2.ok(
        "openFile/listUploadedParts", {"file_id": c["file_id"], "upload_id": c["upload_id"]}
    )
    assert [(p["part_number"], p["etag"]) for p in parts["uploaded_parts"]] == [
        (1, first.headers["etag"])
    ]
    for i, ch in ((2, b"2"), (3, b"3")):
        assert (
            httpx.put(c["part_info_list"][i - 1]["upload_url"], content=ch * P).status_code == 200
        )
    done = api2.ok("openFile/complete", {"file_id": c["file_id"], "upload_id": c["upload_id"]})
    assert done["content_hash"] == hashlib.sha1(b"1" * P + b"2" * P + b"3" * P).hexdigest().upper()


def _swallow(fn: Any, *a: Any, **kw: Any) -> None:
    with contextlib.suppress(httpx.TransportError):
        fn(*a, **kw)
