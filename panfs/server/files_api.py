"""The drive server's Open API endpoints: drive info, listing, files, uploads, downloads.

Owns: the ``user/*`` and ``openFile/*`` handlers as the protocol describes them
(request checks, the service's error codes, file objects in its JSON shape), on top
of ``store.py``. Must not: route, authenticate or count requests (``app.py``), or
touch files or SQL directly.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import time
from typing import Any

import trio

from panfs.server import oss
from panfs.server.http import Request
from panfs.server.state import DRIVE_ID, MAX_NAME, ApiError, PayloadTooLarge, ServerState, iso
from panfs.server.store import EMPTY_SHA1, FileRow, Session


class FilesApi(ServerState):
    # -- helpers ---------------------------------------------------------------
    def check_drive(self, body: dict[str, Any]) -> None:
        if not body.get("drive_id"):
            raise ApiError(400, "BadRequest", "driveId: 不能为空")
        if str(body["drive_id"]) != DRIVE_ID:
            raise ApiError(404, "NotFound.Drive", "The resource drive cannot be found.")

    def file_json(self, f: FileRow) -> dict[str, Any]:
        ext = f.name.rsplit(".", 1)[-1] if "." in f.name and f.type == "file" else ""
        d: dict[str, Any] = {
            "drive_id": DRIVE_ID,
            "file_id": f.file_id,
            "parent_file_id": f.parent_id,
            "name": f.name,
            "type": f.type,
            "file_extension": ext,
            "created_at": iso(f.created_at),
            "updated_at": iso(f.updated_at),
            "status": "available",
            "hidden": False,
            "starred": False,
        }
        if f.type == "file":
            d.update(
                size=f.size,
                content_hash=f.content_hash,
                content_hash_name="sha1",
                category="others",
            )
        return d

    def live_file(self, file_id: Any, code: str = "NotFound.File") -> FileRow:
        f = self.store.get(str(file_id or ""))
        if f is None or f.status not in ("available", "trashed"):
            raise ApiError(404, code, f"The resource file cannot be found. file_id:{file_id}")
        if f.status == "trashed":
            raise ApiError(400, "ForbiddenFileInTheRecycleBin", "The file is in the recycle bin.")
        return f

    def folder(self, file_id: Any) -> str:
        fid = str(file_id or "")
        if fid == "root":
            return fid
        f = self.store.get(fid)
        if f is None or f.status != "available" or f.type != "folder":
            raise ApiError(
                404,
                "NotFound.ParentFileId",
                f"The resource parent_file_id cannot be found. parent_file_id:{fid} not found",
            )
        return fid

    def check_name(self, name: Any) -> str:
        if not isinstance(name, str) or not name or "/" in name or len(name.encode()) > MAX_NAME:
            raise ApiError(400, "InvalidParameter.Name", "The input parameter name is not valid.")
        return name

    def unique_name(self, parent: str, name: str) -> str:
        names = self.store.names(parent)
        stem, dot, ext = name.rpartition(".")
        if not dot or not stem:
            stem, ext, dot = name, "", ""
        n = 1
        while True:
            candidate = f"{stem}({n}){dot}{ext}"
            if candidate not in names:
                return candidate
            n += 1

    # -- Open API: user --------------------------------------------------------
    async def op_user_getDriveInfo(self, body: dict[str, Any], req: Request) -> Any:
        return {
            "user_id": self.user_id,
            "name": "panfs",
            "avatar": "",
            "default_drive_id": DRIVE_ID,
            "resource_drive_id": "10002",
        }

    async def op_user_getSpaceInfo(self, body: dict[str, Any], req: Request) -> Any:
        return {
            "personal_space_info": {
                "used_size": self.store.used_size(),
                "total_size": self.opts.total_size,
            }
        }

    # -- Open API: listing -------------------------------------------------------
    async def op_openFile_list(self, body: dict[str, Any], req: Request) -> Any:
        self.check_drive(body)
        parent = self.folder(body.get("parent_file_id"))
        limit = int(body.get("limit") or 50)
        limit = max(1, min(limit, self.opts.list_page_size))
        marker = str(body.get("marker") or "")
        after = base64.urlsafe_b64decode(marker.encode()).decode() if marker else ""
        rows = self.store.children(parent, after, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        nxt = ""
        if more:
            last = rows[-1]
            nxt = base64.urlsafe_b64encode(f"{last.name}\0{last.file_id}".encode()).decode()
        return {"items": [self.file_json(r) for r in rows], "next_marker": nxt}

    async def op_openFile_get(self, body: dict[str, Any], req: Request) -> Any:
        self.check_drive(body)
        return self.file_json(self.live_file(body.get("file_id")))

    async def op_openFile_get_by_path(self, body: dict[str, Any], req: Request) -> Any:
        self.check_drive(body)
        path = str(body.get("file_path") or "")
        if not path.startswith("/") or path == "/":
            raise ApiError(
                400, "InvalidParameter.FilePath", "The input parameter file_path is not valid."
            )
        parent, found = "root", None
        for part in [p for p in path.split("/") if p]:
            found = self.store.find(parent, part)
            if found is None:
                raise ApiError(404, "NotFound.File", f"The resource file cannot be found. {path}")
            parent = found.file_id
        assert found is not None
        return self.file_json(found)

    # -- Open API: create / upload session ----------------------------------------
    def upload_url(self, upload_id: str, file_id: str, n: int) -> str:
        path = f"/oss/{DRIVE_ID}/{file_id}/{upload_id}"
        params = {
            "partNumber": str(n),
            "uploadId": upload_id,
            "x-oss-access-key-id": "panfs",
            "x-oss-expires": str(int(time.time() + self.opts.upload_url_lifetime)),
            "x-oss-signature-version": "OSS2",
        }
        params["x-oss-signature"] = self.signer.sign_url(path, params)
        q = "&".join(f"{k}={v}" for k, v in params.items())
        return f"{self.url}{path}?{q}"

    def part_infos(self, upload_id: str, file_id: str, numbers: list[int]) -> list[dict[str, Any]]:
        return [
            {
                "part_number": n,
                "upload_url": self.upload_url(upload_id, file_id, n),
                "internal_upload_url": "",
                "content_type": "",
            }
            for n in numbers
        ]

    def part_numbers(self, body: dict[str, Any], default_one: bool) -> list[int]:
        raw = body.get("part_info_list")
        if raw is None:
            return [1] if default_one else []
        if not isinstance(raw, list):
            raise ApiError(
                400,
                "InvalidParameter.PartInfoList",
                "The input parameter part_info_list is not valid.",
            )
        if len(raw) > 10000:
            raise ApiError(
                400,
                "InvalidParameter.PartInfoList",
                "The input parameter part_info_list is not valid. part count can not over 10000",
            )
        nums = []
        for p in raw:
            n = p.get("part_number") if isinstance(p, dict) else None
            if not isinstance(n, int) or not 1 <= n <= 10000:
                raise ApiError(
                    400,
                    "InvalidParameter.PartInfoList",
                    "The input parameter part_info_list is not valid.",
                )
            nums.append(n)
        return nums

    async def op_openFile_create(self, body: dict[str, Any], req: Request) -> Any:
        self.check_drive(body)
        parent = self.folder(body.get("parent_file_id"))
        name = self.check_name(body.get("name"))
        kind = body.get("type")
        if kind not in ("file", "folder"):
            raise ApiError(400, "InvalidParameter.Type", "The input parameter type is not valid.")
        mode = body.get("check_name_mode") or "ignore"
        if mode not in ("refuse", "auto_rename", "ignore"):
            raise ApiError(
                400,
                "InvalidParameter.CheckNameMode",
                "The input parameter check_name_mode is not valid.",
            )
        existing = self.store.find(parent, name)
        if existing is not None:
            if mode == "refuse":
                return {
                    "drive_id": DRIVE_ID,
                    "file_id": existing.file_id,
                    "parent_file_id": parent,
                    "file_name": name,
                    "type": existing.type,
                    "exist": True,
                    "rapid_upload": False,
                    "upload_id": "",
                    "part_info_list": [],
                    "status": "available",
                    "available": True,
                }
            if mode == "auto_rename":
                name = self.unique_name(parent, name)
        if kind == "folder":
            f = self.store.add_file(parent, name, "folder")
            return {
                "drive_id": DRIVE_ID,
                "file_id": f.file_id,
                "parent_file_id": parent,
                "file_name": name,
                "type": "folder",
                "exist": False,
                "rapid_upload": False,
                "upload_id": "",
                "part_info_list": [],
                "status": "available",
                "available": True,
            }
        size = int(body.get("size") or 0)
        if self.opts.max_file_size is not None and size > self.opts.max_file_size:
            raise PayloadTooLarge()
        if size > self.opts.total_size - self.store.used_size():
            raise ApiError(400, "QuotaExhausted.Drive", "The drive quota is exhausted.")
        numbers = self.part_numbers(body, default_one=True)
        pre_hash = body.get("pre_hash")
        content_hash = str(body.get("content_hash") or "").upper()
        if pre_hash and not content_hash and size > 0 and self.store.pre_hash_match(pre_hash, size):
            raise ApiError(409, "PreHashMatched", "Pre hash matched.")
        if (
            content_hash
            and body.get("content_hash_name", "sha1") == "sha1"
            and "proof_code" in body
        ):
            known = self.store.by_hash(content_hash, size)
            if known is not None or (size == 0 and content_hash == EMPTY_SHA1):
                if body.get("proof_code", "") != self.proof(size, known):
                    raise ApiError(400, "InvalidRapidProof", "The proof code is not valid.")
                f = self.store.add_file(parent, name, "file", size=size, content_hash=content_hash)
                if known is not None:
                    self.store.link_blob(known.file_id, f.file_id)
                else:
                    self.store.blob(f.file_id).touch()
                return {
                    "drive_id": DRIVE_ID,
                    "file_id": f.file_id,
                    "parent_file_id": parent,
                    "file_name": name,
                    "type": "file",
                    "exist": existing is not None,
                    "rapid_upload": True,
                    "upload_id": "",
                    "part_info_list": [],
                    "status": "available",
                    "available": True,
                }
        f = self.store.add_file(parent, name, "file", size=size, status="uploading")
        sess = self.store.new_session(
            f.file_id, size, max(numbers, default=1), content_hash if "proof_code" in body else ""
        )
        self.store.update(f.file_id, upload_id=sess.upload_id)
        return {
            "drive_id": DRIVE_ID,
            "file_id": f.file_id,
            "parent_file_id": parent,
            "file_name": name,
            "type": "file",
            "exist": existing is not None,
            "rapid_upload": False,
            "upload_id": sess.upload_id,
            "part_info_list": self.part_infos(sess.upload_id, f.file_id, numbers),
            "status": "uploading",
            "available": False,
        }

    def proof(self, size: int, known: FileRow | None) -> str:
        if size == 0 or known is None:
            return ""
        r = int(hashlib.md5(self.current_token.encode()).hexdigest()[:16], 16)
        start = r % size
        with open(self.store.blob(known.file_id), "rb") as fh:
            fh.seek(start)
            data = fh.read(min(8, size - start))
        return base64.b64encode(data).decode()

    def open_session(self, body: dict[str, Any]) -> Session:
        sess = self.store.session(str(body.get("upload_id") or ""))
        if (
            sess is not None
            and sess.file_id == str(body.get("file_id"))
            and sess.state == "open"
            and time.time() - sess.created_at <= self.opts.session_lifetime
        ):
            return sess
        raise ApiError(
            self.opts.upload_id_status,
            "NotFound.UploadId",
            "The resource upload_id cannot be found. upload is not exist or has been completed",
        )

    async def op_openFile_getUploadUrl(self, body: dict[str, Any], req: Request) -> Any:
        self.check_drive(body)
        f = self.store.get(str(body.get("file_id") or ""))
        if f is not None and f.status == "available":
            sess = self.store.session(str(body.get("upload_id") or ""))
            if sess is None:
                raise ApiError(409, "AlreadyExist.File", "The file already exists (rapid upload).")
        numbers = self.part_numbers(body, default_one=False)
        if not numbers:
            raise ApiError(
                400,
                "InvalidParameter.PartInfoList",
                "The input parameter part_info_list is required.",
            )
        sess = self.open_session(body)
        if self.opts.max_file_size is not None and sess.size > self.opts.max_file_size:
            raise PayloadTooLarge()
        if self.opts.declared_parts_only and max(numbers) > sess.part_count:
            raise ApiError(
                400,
                "InvalidParameter.PartInfoList",
                "The input parameter part_info_list is not valid. part_number "
                f"{max(numbers)} is beyond the {sess.part_count} parts declared at create",
            )
        return {
            "drive_id": DRIVE_ID,
            "file_id": sess.file_id,
            "upload_id": sess.upload_id,
            "created_at": iso(sess.created_at),
            "create_at": iso(sess.created_at),
            "part_info_list": self.part_infos(sess.upload_id, sess.file_id, numbers),
        }

    async def op_openFile_listUploadedParts(self, body: dict[str, Any], req: Request) -> Any:
        self.check_drive(body)
        sess = self.open_session(body)
        marker = str(body.get("part_number_marker") or "0")
        after = int(marker) if marker.isdigit() else 0
        limit = self.opts.parts_page_size
        parts = self.store.parts(sess.upload_id, after, limit + 1)
        more = len(parts) > limit
        parts = parts[:limit]
        return {
            "drive_id": DRIVE_ID,
            "upload_id": sess.upload_id,
            "parallelUpload": False,
            "uploaded_parts": [self.uploaded_part(p.part_number, p.size, p.md5) for p in parts],
            "next_part_number_marker": str(parts[-1].part_number) if more else "",
        }

    def uploaded_part(self, number: int, size: int, etag: str) -> dict[str, Any]:
        """One ``uploaded_parts`` entry as ``--parts-listing`` says (the PDS reference marks
        ``part_size`` and ``etag`` discontinued)."""
        entry: dict[str, Any] = {"part_number": number}
        if self.opts.parts_listing in ("full", "no-etag"):
            entry["part_size"] = size
        if self.opts.parts_listing in ("full", "no-size"):
            entry["etag"] = f'"{etag}"'
        return entry

    async def op_openFile_complete(self, body: dict[str, Any], req: Request) -> Any:
        self.check_drive(body)
        sess = self.open_session(body)
        async with self.put_lock:
            parts = self.store.parts(sess.upload_id)
            total = 0
            for i, p in enumerate(parts, 1):
                if p.part_number != i:
                    break
                if i < len(parts) and p.size < self.opts.min_part_size:
                    raise ApiError(
                        400,
                        "InvalidResource.PartList",
                        "The resource part_list is not valid. part entity too small",
                    )
                total += p.size
            if total != sess.size and not self.opts.lenient_complete:
                raise ApiError(
                    400,
                    "InvalidParameter.Size",
                    f"The input parameter size is not valid. uploaded {total} bytes, "
                    f"declared {sess.size}",
                )
            sha1 = await trio.to_thread.run_sync(self.store.running_sha1, sess.upload_id, total)
            digest = sha1.hexdigest().upper()
            if sess.content_hash and sess.content_hash != digest:
                raise ApiError(
                    400,
                    "InvalidParameter.ContentHash",
                    "The input parameter content_hash is not valid. file content hash "
                    "is not matched with content_hash in complete file request",
                )
            self.store.finish(sess.upload_id, sess.file_id, total, digest)
        f = self.store.get(sess.file_id)
        assert f is not None
        done = self.file_json(f)
        if self.opts.complete_without_hash:  # alipan-rs: the answer's content_hash may be null
            del done["content_hash"], done["content_hash_name"]
        return done

    # -- Open API: changes -----------------------------------------------------------
    async def op_openFile_update(self, body: dict[str, Any], req: Request) -> Any:
        self.check_drive(body)
        f = self.live_file(body.get("file_id"))
        if "name" in body:
            name = self.check_name(body["name"])
            clash = self.store.find(f.parent_id, name)
            mode = body.get("check_name_mode") or "refuse"
            if clash is not None and clash.file_id != f.file_id:
                if mode == "refuse":
                    raise ApiError(
                        400, "AlreadyExist.File", "The resource file has already existed."
                    )
                if mode == "auto_rename":
                    name = self.unique_name(f.parent_id, name)
            self.store.update(f.file_id, name=name)
        g = self.store.get(f.file_id)
        assert g is not None
        return self.file_json(g)

    async def op_openFile_move(self, body: dict[str, Any], req: Request) -> Any:
        self.check_drive(body)
        f = self.live_file(body.get("file_id"))
        parent = self.folder(body.get("to_parent_file_id"))
        new_name = body.get("new_name")
        if new_name:
            self.check_name(new_name)
        rename = self.opts.move_new_name == "rename"
        name = str(new_name) if new_name and rename else f.name
        probe = parent
        while probe != "root":  # no folder into itself
            if probe == f.file_id:
                raise ApiError(400, "InvalidParameter.ToParentFileId", "cannot move into itself")
            row = self.store.get(probe)
            probe = row.parent_id if row else "root"
        clash = self.store.find(parent, name)
        if clash is not None and clash.file_id != f.file_id and new_name and not rename:
            # --move-new-name on-conflict: new_name is the name to use when the target is taken
            name = str(new_name)
            clash = self.store.find(parent, name)
        if clash is not None and clash.file_id != f.file_id:
            mode = body.get("check_name_mode") or "refuse"
            if mode == "refuse":
                return {
                    "drive_id": DRIVE_ID,
                    "file_id": f.file_id,
                    "exist": True,
                    "async_task_id": "",
                }
            if mode == "auto_rename":
                name = self.unique_name(parent, name)
        self.store.update(f.file_id, parent_id=parent, name=name)
        return {"drive_id": DRIVE_ID, "file_id": f.file_id, "exist": False, "async_task_id": ""}

    async def op_openFile_trash(self, body: dict[str, Any], req: Request) -> Any:
        self.check_drive(body)
        f = self.store.get(str(body.get("file_id") or ""))
        if f is not None and f.status == "trashed" and self.opts.trash_trashed == "recycle-bin":
            raise ApiError(400, "ForbiddenFileInTheRecycleBin", "The file is in the recycle bin.")
        if f is None or f.status != "available":
            raise ApiError(404, "NotFound.File", "The resource file cannot be found.")
        self.store.update(f.file_id, status="trashed")
        return {"drive_id": DRIVE_ID, "file_id": f.file_id, "async_task_id": ""}

    async def op_openFile_recyclebin_trash(self, body: dict[str, Any], req: Request) -> Any:
        return await self.op_openFile_trash(body, req)

    async def op_openFile_delete(self, body: dict[str, Any], req: Request) -> Any:
        self.check_drive(body)
        f = self.store.get(str(body.get("file_id") or ""))
        if f is None or f.status == "deleted":
            raise ApiError(404, "NotFound.File", "The resource file cannot be found.")
        self.store.update(f.file_id, status="deleted")
        self.store.blob(f.file_id).unlink(missing_ok=True)
        return {"drive_id": DRIVE_ID, "file_id": f.file_id, "async_task_id": ""}

    async def op_openFile_getDownloadUrl(self, body: dict[str, Any], req: Request) -> Any:
        self.check_drive(body)
        f = self.live_file(body.get("file_id"), "NotFound.FileId")
        if f.type == "folder":
            raise ApiError(400, "InvalidResource.FileTypeFolder", "folders cannot be downloaded")
        life = min(float(body.get("expire_sec") or self.opts.download_url_lifetime), 14400.0)
        url, expires = oss.download_url(self, f.file_id, life)
        answer: dict[str, Any] = {
            "url": url,
            "expiration": iso(expires),
            "method": "GET",
            "size": f.size,
            "content_hash": f.content_hash,
            "content_hash_name": "sha1",
            "file_id": f.file_id,
            "description": "",
        }
        if any(fnmatch.fnmatchcase(f.name, g) for g in self.opts.download_url_missing):
            # alist issue #5453: no url for some files (live photos), streamsUrl beside it
            answer["url"] = None if self.opts.download_url_missing_as == "null" else ""
            if self.opts.streams_url:
                fmt = f.name.rsplit(".", 1)[-1] if "." in f.name else "file"
                answer["streamsUrl"] = {fmt: url}
        return answer
