"""``panfs serve``: the drive server on loopback (Open API + upload host + admin).

Owns: parsing the server's options and fault file into ``ServerOptions`` / ``Faults``
with one-line errors. Must not: hold server logic (``panfs.server``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import yaml

from panfs.config import parse_size, xdg_dir
from panfs.errors import UsageError
from panfs.server.faults import FaultRuleError, Faults
from panfs.server.options import OFFICIAL_RATE_LIMITS, PARTS_LISTINGS, PROFILES, ServerOptions

HELP = "run the drive server (Open API + upload host) on loopback"
EXAMPLE = """examples:
  panfs serve --root /srv/drive --port 8080        prints "listening on URL" first
  panfs serve --max-file-size 1GiB --faults faults.yaml    see docs/server.md"""


def _size(v: str) -> int:
    try:
        return parse_size(v)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _rate(v: str) -> tuple[str, float, float]:
    try:
        op, spec = v.split("=", 1)
        rate, _, burst = spec.partition("/")
        return op, float(rate), float(burst or rate)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected OP=RATE[/BURST], got {v!r}") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--root", type=Path, default=None, help="data dir (default XDG data/panfs/drive)"
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port (0 picks a free one)")
    p.add_argument("--faults", type=Path, help="YAML list of fault rules to start with")
    p.add_argument("--access-token-lifetime", type=float, default=7200.0, metavar="S")
    p.add_argument("--refresh-token-lifetime", type=float, default=90 * 86400.0, metavar="S")
    p.add_argument("--upload-url-lifetime", type=float, default=3600.0, metavar="S")
    p.add_argument("--download-url-lifetime", type=float, default=900.0, metavar="S")
    p.add_argument("--download-url-style", choices=("OSS2", "OSS4"), default=None)
    p.add_argument("--session-lifetime", type=float, default=10 * 86400.0, metavar="S")
    p.add_argument("--quota", type=_size, default=1 << 40, help="drive size (default 1TiB)")
    p.add_argument("--max-file-size", type=_size, default=None, help="per-file cap: 413 above")
    p.add_argument("--list-page-size", type=int, default=100, help="openFile/list page clamp")
    p.add_argument("--parts-page-size", type=int, default=100, help="listUploadedParts page")
    p.add_argument(
        "--lenient-complete",
        action="store_true",
        help="complete with the uploaded prefix instead of refusing a size mismatch",
    )
    p.add_argument(
        "--upload-id-status",
        type=int,
        choices=(400, 404),
        default=None,
        help="HTTP status of NotFound.UploadId (default 400)",
    )
    p.add_argument("--min-part-size", type=_size, default=100 * 1024)
    p.add_argument(
        "--rate-limit",
        type=_rate,
        action="append",
        default=[],
        metavar="OP=R[/B]",
        help="token bucket of one endpoint (op name, or * for the one shared by the others), "
        "requests/s and burst; changes that bucket of the official limits",
    )
    p.add_argument(
        "--no-rate-limits",
        action="store_true",
        help="turn the official rate limits off (benchmarks, speed-sensitive tests)",
    )
    p.add_argument("--retry-after-ms", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0, help="seed of fault probabilities")
    # the readings of docs/protocol-assumptions.md; each default is the profile's
    p.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default="default",
        help="a set of the options below; strict turns on every harsh reading",
    )
    p.add_argument(
        "--parts-listing",
        choices=PARTS_LISTINGS,
        default=None,
        help="fields of listUploadedParts entries (default full: part_size and etag)",
    )
    p.add_argument(
        "--etag", choices=("md5", "opaque"), default=None, help="part PUT ETag (default md5)"
    )
    p.add_argument(
        "--complete-without-hash",
        action="store_const",
        const=True,
        default=None,
        help="complete answers without content_hash",
    )
    p.add_argument(
        "--move-new-name",
        choices=("rename", "on-conflict"),
        default=None,
        help="openFile/move new_name: a rename (default) or the name used only on a clash",
    )
    p.add_argument(
        "--trash-trashed",
        choices=("not-found", "recycle-bin"),
        default=None,
        help="trash of an item already in the recycle bin: 404 NotFound.File (default) or"
        " 400 ForbiddenFileInTheRecycleBin",
    )
    p.add_argument(
        "--declared-parts-only",
        action="store_const",
        const=True,
        default=None,
        help="getUploadUrl refuses part numbers beyond those declared at create",
    )
    p.add_argument(
        "--oss-5xx-every",
        type=int,
        default=None,
        metavar="N",
        help="every Nth part PUT answers 500 InternalError / 503 ServiceUnavailable (OSS XML)",
    )
    p.add_argument(
        "--expire-session-after-parts",
        type=int,
        default=None,
        metavar="N",
        help="an upload session expires once it has N parts (once per folder + name)",
    )
    p.add_argument(
        "--download-url-missing",
        action="append",
        default=None,
        metavar="GLOB",
        help="files whose name matches get no url from getDownloadUrl",
    )
    p.add_argument(
        "--download-url-missing-as",
        choices=("null", "empty"),
        default="null",
        help="a missing url is null (default) or an empty string",
    )
    p.add_argument(
        "--no-streams-url",
        action="store_true",
        help="no streamsUrl beside a missing url: the bytes cannot be had at all",
    )
    p.add_argument(
        "--qrcode-lifetime", type=float, default=180.0, metavar="S", help="QR-code login life"
    )


def options(args: argparse.Namespace) -> ServerOptions:
    """The options: built-in defaults, then the profile's, then what the command line says."""
    limits = {} if args.no_rate_limits else dict(OFFICIAL_RATE_LIMITS)
    limits.update({op: (r, b) for op, r, b in args.rate_limit})
    opts = ServerOptions(
        access_token_lifetime=args.access_token_lifetime,
        refresh_token_lifetime=args.refresh_token_lifetime,
        upload_url_lifetime=args.upload_url_lifetime,
        download_url_lifetime=args.download_url_lifetime,
        session_lifetime=args.session_lifetime,
        total_size=args.quota,
        max_file_size=args.max_file_size,
        list_page_size=args.list_page_size,
        parts_page_size=args.parts_page_size,
        lenient_complete=args.lenient_complete,
        min_part_size=args.min_part_size,
        rate_limits=limits,
        retry_after_ms=args.retry_after_ms,
        seed=args.seed,
        download_url_missing_as=args.download_url_missing_as,
        streams_url=not args.no_streams_url,
        qrcode_lifetime=args.qrcode_lifetime,
    )
    for name, value in PROFILES[args.profile].items():
        setattr(opts, name, value)
    for name in (
        "download_url_style",
        "upload_id_status",
        "parts_listing",
        "etag",
        "complete_without_hash",
        "move_new_name",
        "trash_trashed",
        "declared_parts_only",
        "oss_5xx_every",
        "expire_session_after_parts",
        "download_url_missing",
    ):
        value = getattr(args, name)
        if value is not None:
            setattr(opts, name, value)
    return opts


def run(args: argparse.Namespace) -> int:
    from panfs.server import serve

    if args.host not in ("127.0.0.1", "::1", "localhost"):
        print(
            f"panfs serve: warning: binding {args.host}: reachable from other machines",
            file=sys.stderr,
        )
    faults = Faults(args.seed)
    if args.faults:
        try:
            faults.replace(yaml.safe_load(args.faults.read_text()))
        except (OSError, yaml.YAMLError, FaultRuleError) as e:
            raise UsageError(f"--faults {args.faults}: {e}") from None
    opts = options(args)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    root = args.root or xdg_dir("data") / "drive"
    serve.run(root, "127.0.0.1" if args.host == "localhost" else args.host, args.port, opts, faults)
    return 0
