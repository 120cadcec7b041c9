"""Every reading of docs/protocol-assumptions.md the drive server implements, over real HTTP.

One test per server option (and ``--profile strict``), raw httpx against ``panfs serve``.
"""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import pytest
import trio

from tests.server.conftest import Api

KB = 1024
P = 100 * KB  # the smallest allowed non-last part


def _xml_code(r: httpx.Response) -> str:
    assert r.headers["content-type"].startswith("application/xml")
    return r.text.split("<Code>")[1].split("</Code>")[0]


def _ids(c: dict[str, Any]) -> dict[str, Any]:
    return {"file_id": c["file_id"], "upload_id": c["upload_id"]}


@pytest.mark.parametrize(
    ("listing", "keys"),
    [
        ("full", {"part_number", "part_size", "etag"}),
        ("no-etag", {"part_number", "part_size"}),
        ("no-size", {"part_number", "etag"}),
        ("bare", {"part_number"}),
    ],
)
def test_parts_listing(drive_with: Any, listing: str, keys: set[str]) -> None:
    api = Api(drive_with("--parts-listing", listing, "--no-rate-limits"))
    c = api.create("f", P + 7, 2)
    for info, body in zip(c["part_info_list"], (b"a" * P, b"b" * 7), strict=True):
        assert httpx.put(info["upload_url"], content=body).status_code == 200
    parts = api.ok("openFile/listUploadedParts", _ids(c))["uploaded_parts"]
    assert [p["part_number"] for p in parts] == [1, 2]
    assert all(set(p) == keys for p in parts)
    if "part_size" in keys:
        assert [p["part_size"] for p in parts] == [P, 7]


def test_opaque_etag(drive_with: Any) -> None:
    api = Api(drive_with("--etag", "opaque", "--no-rate-limits"))
    c = api.create("f", P, 1)
    url = c["part_info_list"][0]["upload_url"]
    first = httpx.put(url, content=b"e" * P)
    etag = first.headers["etag"]
    assert etag.strip('"') != hashlib.md5(b"e" * P).hexdigest().upper()
    assert len(etag.strip('"')) == 32  # the shape of an MD5, not its value
    again = httpx.put(url, content=b"e" * P)
    assert _xml_code(again) == "PartAlreadyExist"
    assert f"<ETag>{etag}</ETag>" in again.text  # one ETag per part, wherever it shows
    listed = api.ok("openFile/listUploadedParts", _ids(c))["uploaded_parts"]
    assert listed[0]["etag"] == etag
    plain = Api(drive_with("--no-rate-limits"))
    c = plain.create("f", P, 1)
    r = httpx.put(c["part_info_list"][0]["upload_url"], content=b"e" * P)
    assert r.headers["etag"] == f'"{hashlib.md5(b"e" * P).hexdigest().upper()}"'


def test_complete_without_hash(drive_with: Any) -> None:
    api = Api(drive_with("--complete-without-hash", "--no-rate-limits"))
    done = api.upload("h.txt", [b"hash me"])
    assert "content_hash" not in done
    assert done["size"] == 7
    got = api.ok("openFile/get", {"file_id": done["file_id"]})
    assert got["content_hash"] == hashlib.sha1(b"hash me").hexdigest().upper()


def _folder(api: Api, name: str) -> str:
    r = api.ok("openFile/create", {"parent_file_id": "root", "name": name, "type": "folder"})
    return str(r["file_id"])


def test_move_new_name_readings(drive_with: Any) -> None:
    strict = Api(drive_with("--move-new-name", "on-conflict", "--no-rate-limits"))
    dst = _folder(strict, "dst")
    a = strict.upload("a.txt", [b"a"])
    r = strict.ok(
        "openFile/move", {"file_id": a["file_id"], "to_parent_file_id": dst, "new_name": "z.txt"}
    )
    assert r["exist"] is False
    assert strict.ok("openFile/get", {"file_id": a["file_id"]})["name"] == "a.txt"  # no rename
    strict.upload("b.txt", [b"b1"], parent=dst)
    b = strict.upload("b.txt", [b"b2"])
    strict.ok(
        "openFile/move", {"file_id": b["file_id"], "to_parent_file_id": dst, "new_name": "c.txt"}
    )
    assert strict.ok("openFile/get", {"file_id": b["file_id"]})["name"] == "c.txt"  # on a clash
    d = strict.upload("c.txt", [b"c"])  # new_name taken too: check_name_mode decides (refuse)
    blocked = strict.ok(
        "openFile/move", {"file_id": d["file_id"], "to_parent_file_id": dst, "new_name": "c.txt"}
    )
    assert blocked["exist"] is True
    assert strict.ok("openFile/get", {"file_id": d["file_id"]})["parent_file_id"] == "root"
    plain = Api(drive_with("--no-rate-limits"))
    dst = _folder(plain, "dst")
    a = plain.upload("a.txt", [b"a"])
    plain.ok(
        "openFile/move", {"file_id": a["file_id"], "to_parent_file_id": dst, "new_name": "z.txt"}
    )
    assert plain.ok("openFile/get", {"file_id": a["file_id"]})["name"] == "z.txt"  # a rename


def test_declared_parts_only(drive_with: Any) -> None:
    api = Api(drive_with("--declared-parts-only", "--no-rate-limits"))
    c = api.create("f", 2 * P, 2)
    ok = api.ok("openFile/getUploadUrl", {**_ids(c), "part_info_list": [{"part_number": 2}]})
    assert ok["part_info_list"][0]["part_number"] == 2
    r = api.call("openFile/getUploadUrl", {**_ids(c), "part_info_list": [{"part_number": 3}]})
    assert r.status_code == 400
    assert r.json()["code"] == "InvalidParameter.PartInfoList"
    lax = Api(drive_with("--no-rate-limits"))
    c = lax.create("f", 2 * P, 2)
    lax.ok("openFile/getUploadUrl", {**_ids(c), "part_info_list": [{"part_number": 3}]})


async def _burst(api: Api, op: str, body: dict[str, Any], n: int, admin: bool = False) -> list[int]:
    """``n`` calls at once; their statuses."""
    codes: list[int] = []
    headers = {"Authorization": f"Bearer {api.access}"}
    if admin:
        headers["x-panfs-admin"] = api.server.account["admin_token"]
    async with httpx.AsyncClient(timeout=60) as http:

        async def one() -> None:
            b = {"drive_id": api.drive_id, **body}
            r = await http.post(f"{api.url}/adrive/v1.0/{op}", json=b, headers=headers)
            if r.status_code == 429:
                assert r.json()["code"] == "TooManyRequests"
                assert int(r.headers["x-retry-after"]) > 0
            codes.append(r.status_code)

        async with trio.open_nursery() as nursery:
            for _ in range(n):
                nursery.start_soon(one)
    return codes


async def test_official_rate_limits_are_on_by_default(drive_with: Any) -> None:
    api = Api(drive_with())
    api.server.reset_stats()
    f = api.upload("x", [b"x"])
    # three seconds' worth at once: each bucket answers some and refuses the rest, and the
    # server counts every refusal under its endpoint
    for op, body, rate in (
        ("openFile/list", {"parent_file_id": "root"}, 4),
        ("openFile/getDownloadUrl", {"file_id": f["file_id"]}, 1),
        ("openFile/get", {"file_id": f["file_id"]}, 15),
    ):
        codes = await _burst(api, op, body, 3 * rate)
        assert set(codes) == {200, 429}, (op, codes)
        by_op = api.server.stats()["too_many_requests_by_op"]
        assert by_op[op.rsplit("/", 1)[1]] == codes.count(429), (op, codes, by_op)
    stats = api.server.stats()
    assert stats["too_many_requests"] == stats["errors"]["TooManyRequests"]
    assert set(stats["too_many_requests_by_op"]) == {"list", "getDownloadUrl", "get"}


async def test_a_burst_gets_exactly_what_its_bucket_holds(drive_with: Any) -> None:
    """Buckets that refill once in 1000 s: a burst gets exactly the tokens its bucket
    holds, whatever the calls take (list 4, getDownloadUrl 1, the shared one 15)."""
    slow = ("list=0.001/4", "getDownloadUrl=0.001/1", "*=0.001/15")
    api = Api(drive_with(*(a for spec in slow for a in ("--rate-limit", spec))))
    f = api.upload("x", [b"x"])  # getDriveInfo, create and complete spent 3 of the shared 15
    for op, body, tokens in (
        ("openFile/list", {"parent_file_id": "root"}, 4),
        ("openFile/getDownloadUrl", {"file_id": f["file_id"]}, 1),
        ("openFile/get", {"file_id": f["file_id"]}, 12),
    ):
        codes = await _burst(api, op, body, 3 * tokens + 3)
        assert (codes.count(200), codes.count(429)) == (tokens, 2 * tokens + 3), (op, codes)


def test_other_calls_share_one_budget(drive_with: Any) -> None:
    api = Api(drive_with("--rate-limit", "*=0.1/4"))  # getDriveInfo spends one
    f = api.upload("x", [b"x"])  # create and complete two more
    assert api.call("openFile/get", {"file_id": f["file_id"]}).status_code == 200
    r = api.call("user/getSpaceInfo", {})  # another endpoint, the same budget
    assert r.status_code == 429
    assert api.call("openFile/list", {"parent_file_id": "root"}).status_code == 200  # its own


async def test_rate_limits_off_or_changed(drive_with: Any) -> None:
    off = Api(drive_with("--no-rate-limits"))
    codes = await _burst(off, "openFile/list", {"parent_file_id": "root"}, 30)
    assert codes == [200] * 30
    assert off.server.stats()["too_many_requests"] == 0
    changed = Api(drive_with("--rate-limit", "list=1000/1000"))
    codes = await _burst(changed, "openFile/list", {"parent_file_id": "root"}, 30)
    assert codes == [200] * 30
    f = changed.upload("x", [b"x"])
    codes = await _burst(changed, "openFile/getDownloadUrl", {"file_id": f["file_id"]}, 4)
    assert 429 in codes  # the other official limits stay
    codes = await _burst(changed, "openFile/getDownloadUrl", {"file_id": f["file_id"]}, 4, True)
    assert codes == [200] * 4  # an admin's reads (the tests' assertions) are not limited
    changed.server.reset_stats()
    changed.server.set_faults([{"op": "get", "action": "status", "status": 429, "times": 1}])
    assert changed.call("openFile/get", {"file_id": f["file_id"]}).status_code == 429
    assert changed.server.stats()["too_many_requests"] == 1  # an injected 429 counts too


def test_oss_5xx_with_xml_bodies(drive_with: Any) -> None:
    api = Api(drive_with("--oss-5xx-every", "2", "--no-rate-limits"))
    c = api.create("f", 2 * P, 2)
    urls = [i["upload_url"] for i in c["part_info_list"]]
    assert httpx.put(urls[0], content=b"1" * P).status_code == 200
    seen = []
    for _ in range(2):  # the 2nd and 4th PUTs fail: InternalError, then ServiceUnavailable
        r = httpx.put(urls[1], content=b"2" * P)
        seen.append((r.status_code, _xml_code(r)))
        assert "<RequestId>" in r.text
        r = httpx.put(urls[1], content=b"2" * P)
        assert r.status_code in (200, 409)
    assert sorted(seen) == [(500, "InternalError"), (503, "ServiceUnavailable")]
    stats = api.server.stats()
    assert stats["parts_stored"] == 2
    assert stats["part_bytes_received"] == 5 * P  # the refused bodies were read and count
    api.server.set_faults(
        [{"op": "put_part", "action": "oss_error", "code": "ServiceUnavailable", "times": 1}]
    )
    c = api.create("g", 10, 1)
    r = httpx.put(c["part_info_list"][0]["upload_url"], content=b"g" * 10)
    assert (r.status_code, _xml_code(r)) == (503, "ServiceUnavailable")


def test_session_expires_mid_upload(drive_with: Any) -> None:
    api = Api(
        drive_with("--expire-session-after-parts", "2", "--min-part-size", "1", "--no-rate-limits")
    )
    c = api.create("big", 4, 4)
    urls = [i["upload_url"] for i in c["part_info_list"]]
    for url in urls[:2]:
        assert httpx.put(url, content=b"p").status_code == 200  # the 2nd part is acknowledged
    r = api.call("openFile/getUploadUrl", {**_ids(c), "part_info_list": [{"part_number": 3}]})
    assert r.status_code == 400
    assert r.json()["code"] == "NotFound.UploadId"
    r = httpx.put(urls[2], content=b"p")
    assert (r.status_code, _xml_code(r)) == (404, "NoSuchUpload")
    for op in ("openFile/listUploadedParts", "openFile/complete"):
        assert api.call(op, _ids(c)).json()["code"] == "NotFound.UploadId"
    again = api.create("big", 4, 4)  # a new session of the same file finishes
    for info in again["part_info_list"]:
        assert httpx.put(info["upload_url"], content=b"q").status_code == 200
    assert api.ok("openFile/complete", _ids(again))["size"] == 4
    assert api.server.stats()["sessions_expired"] == 1
    api.server.set_faults(
        [{"op": "getUploadUrl", "match": {"part_number": 2}, "action": "expire_session"}]
    )
    c = api.create("other", 2, 2)
    assert httpx.put(c["part_info_list"][0]["upload_url"], content=b"o").status_code == 200
    api.ok("openFile/getUploadUrl", {**_ids(c), "part_info_list": [{"part_number": 1}]})
    r = api.call("openFile/getUploadUrl", {**_ids(c), "part_info_list": [{"part_number": 2}]})
    assert r.json()["code"] == "NotFound.UploadId"
    assert api.server.stats()["sessions_expired"] == 2
    api.server.set_faults([{"op": "put_part", "action": "expire_session"}])
    c = api.create("third", 2, 2)
    r = httpx.put(c["part_info_list"][0]["upload_url"], content=b"t")
    assert (r.status_code, _xml_code(r)) == (404, "NoSuchUpload")
    assert api.call("openFile/listUploadedParts", _ids(c)).json()["code"] == "NotFound.UploadId"


def test_download_url_missing(drive_with: Any) -> None:
    api = Api(drive_with("--download-url-missing", "*.livp", "--no-rate-limits"))
    live = api.upload("photo.livp", [b"live photo"])
    plain = api.upload("plain.txt", [b"plain"])
    d = api.ok("openFile/getDownloadUrl", {"file_id": live["file_id"]})
    assert d["url"] is None
    assert httpx.get(d["streamsUrl"]["livp"]).content == b"live photo"
    d = api.ok("openFile/getDownloadUrl", {"file_id": plain["file_id"]})
    assert httpx.get(d["url"]).content == b"plain"
    assert "streamsUrl" not in d
    none = Api(
        drive_with(
            "--download-url-missing",
            "*",
            "--download-url-missing-as",
            "empty",
            "--no-streams-url",
            "--no-rate-limits",
        )
    )
    f = none.upload("any", [b"x"])
    d = none.ok("openFile/getDownloadUrl", {"file_id": f["file_id"]})
    assert d["url"] == ""
    assert "streamsUrl" not in d


@pytest.mark.parametrize(
    "fault",
    [
        {"action": "status", "status": 502, "body": "Bad Gateway"},
        {"action": "drop"},
    ],
)
def test_discarded_part_bodies_count_as_received(drive_with: Any, fault: dict[str, Any]) -> None:
    api = Api(drive_with("--no-rate-limits"))
    c = api.create("f", P, 1)
    api.server.reset_stats()
    api.server.set_faults([{"op": "put_part", "times": 1, **fault}])
    url = c["part_info_list"][0]["upload_url"]
    try:
        first = httpx.put(url, content=b"d" * P)
        assert first.status_code == 502
    except httpx.TransportError:
        assert fault["action"] == "drop"
    assert httpx.put(url, content=b"d" * P).status_code == 200
    stats = api.server.stats()
    assert stats["part_bytes_received"] == 2 * P
    assert stats["part_bytes_stored"] == P
    bad = httpx.put(url.replace("partNumber=1", "partNumber=2"), content=b"s" * P)
    assert _xml_code(bad) == "SignatureDoesNotMatch"
    assert api.server.stats()["part_bytes_received"] == 3 * P


def test_profile_strict(drive_with: Any) -> None:
    api = Api(drive_with("--profile", "strict", "--min-part-size", "1"))
    c = api.create("f", 2, 2)
    r = httpx.put(c["part_info_list"][0]["upload_url"], content=b"s")
    assert r.headers["etag"].strip('"') != hashlib.md5(b"s").hexdigest().upper()
    parts = api.ok("openFile/listUploadedParts", _ids(c))["uploaded_parts"]
    assert parts == [{"part_number": 1}]
    r = api.call("openFile/getUploadUrl", {**_ids(c), "part_info_list": [{"part_number": 3}]})
    assert r.json()["code"] == "InvalidParameter.PartInfoList"
    assert httpx.put(c["part_info_list"][1]["upload_url"], content=b"t").status_code == 200
    done = api.ok("openFile/complete", _ids(c))
    assert "content_hash" not in done
    r = api.call("openFile/complete", _ids(c))
    assert (r.status_code, r.json()["code"]) == (404, "NotFound.UploadId")
    d = api.ok("openFile/getDownloadUrl", {"file_id": done["file_id"]})
    assert "x-oss-date=" in d["url"]  # OSS4 download URLs
    over = Api(drive_with("--profile", "strict", "--parts-listing", "full", "--etag", "md5"))
    c = over.create("f", 1, 1)
    r = httpx.put(c["part_info_list"][0]["upload_url"], content=b"o")
    assert r.headers["etag"] == f'"{hashlib.md5(b"o").hexdigest().upper()}"'  # the option wins
    parts = over.ok("openFile/listUploadedParts", _ids(c))["uploaded_parts"]
    assert set(parts[0]) == {"part_number", "part_size", "etag"}
