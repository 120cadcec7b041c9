"""Open API client over ``httpx.AsyncClient`` under trio.

Owns: every HTTP request panfs makes to the drive (API host, upload host,
download host); auth with single-flight token refresh; turning every response
into a typed value or a classified ``RemoteError``; bounded retry of API calls.
Must not: know about files, journals, FUSE, or decide upload policy (the upload
session does); retry part PUTs (their recovery needs the session's reconciliation).

CONTRACT (implemented in this module; the uploader and the mount rely on it):

    async with open_client(settings, state_dir) as client:   # resolves drive_id
        client.drive_id: str
        await client.drive_info() -> DriveInfo
        await client.space_info() -> SpaceInfo
        await client.list_folder(parent_file_id) -> list[RemoteFile]      # every page
        await client.get_file(file_id) -> RemoteFile
        await client.get_by_path("/a/b") -> RemoteFile
        await client.create_folder(parent_file_id, name, check_name_mode="refuse") -> CreateResult
        await client.create_file(parent_file_id, name, size, part_sizes,
                                 check_name_mode="ignore", pre_hash=None, rapid=None)
                                 -> CreateResult          # PreHashMatched -> PreHashMatchedError
        await client.get_upload_urls(file_id, upload_id, part_numbers) -> dict[int, UploadUrl]
        await client.list_uploaded_parts(file_id, upload_id) -> list[UploadedPart]  # every page
        await client.complete(file_id, upload_id) -> RemoteFile
        await client.rename(file_id, new_name, check_name_mode="refuse") -> RemoteFile
        await client.move(file_id, to_parent_file_id, new_name=None) -> None
        await client.trash(file_id) -> None            # already gone counts as success
        await client.delete(file_id) -> None           # already gone counts as success
        await client.get_download_url(file_id) -> DownloadUrl
        await client.download_range(url, start, end_exclusive) -> bytes
        await client.put_part(url, body, length) -> str   # server ETag, upper hex, no quotes

API calls retry transient failures (429 after ``x-retry-after``; 5xx, gateway
text/HTML, network errors with jittered exponential back-off capped at
``settings.max_backoff``) up to ``settings.api_attempts`` times, then raise the
last ``TransientError``; callers that must go on forever (the uploader) catch it,
record it, and try again later. 401 AccessTokenExpired/Invalid -> refresh once
(single-flight) and retry once. ``put_part`` never retries.
"""
