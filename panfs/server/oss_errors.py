"""The upload host's error answers: OSS-style XML bodies and their HTTP statuses.

Owns: the error codes the upload and download hosts answer with, their messages and
statuses, and the XML body (as the real service's OSS hosts write it). Must not: decide
when an error is answered (``oss.py`` and the fault rules in ``state.py`` do).
"""

from __future__ import annotations

import secrets

HOST_ID = "cn-beijing-data.aliyundrive.net"
MESSAGES = {
    "PartNotSequential": "For sequential multipart upload, you must upload or complete parts "
    "with sequential part number.",
    "PartAlreadyExist": "For sequential multipart upload, you can't overwrite uploaded parts.",
    "AccessDenied": "Request has expired.",
    "SignatureDoesNotMatch": "The request signature we calculated does not match the signature "
    "you provided. Check your key and signing method.",
    "NoSuchUpload": "The specified upload does not exist. The upload ID may be invalid, or the "
    "upload may have been aborted or completed.",
    "InvalidArgument": "Part number must be an integer between 1 and 10000, inclusive.",
    "InternalError": "We encountered an internal error. Please try again.",
    "ServiceUnavailable": "Please reduce your request rate.",
}
STATUS = {
    "PartNotSequential": 400,
    "PartAlreadyExist": 409,
    "AccessDenied": 403,
    "SignatureDoesNotMatch": 403,
    "NoSuchUpload": 404,
    "InvalidArgument": 400,
    "InternalError": 500,
    "ServiceUnavailable": 503,
}


def xml_error(code: str, extra: dict[str, str] | None = None) -> bytes:
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        "<Error>",
        f"  <Code>{code}</Code>",
        f"  <Message>{MESSAGES.get(code, code)}</Message>",
        f"  <RequestId>{secrets.token_hex(12).upper()}</RequestId>",
        f"  <HostId>{HOST_ID}</HostId>",
    ]
    for k, v in (extra or {}).items():
        lines.append(f"  <{k}>{v}</{k}>")
    lines.append("</Error>")
    return "\n".join(lines).encode()
