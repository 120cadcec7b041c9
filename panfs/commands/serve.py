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
from panfs.server.options import ServerOptions

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
    p.add_argument("--download-url-style", choices=("OSS2", "OSS4"), default="OSS2")
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
        default=400,
        help="HTTP status of NotFound.UploadId",
    )
    p.add_argument("--min-part-size", type=_size, default=100 * 1024)
    p.add_argument(
        "--rate-limit",
        type=_rate,
        action="append",
        default=[],
        metavar="OP=R[/B]",
        help="token bucket per endpoint (op name or *), requests/s and burst",
    )
    p.add_argument("--retry-after-ms", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0, help="seed of fault probabilities")


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
    opts = ServerOptions(
        access_token_lifetime=args.access_token_lifetime,
        refresh_token_lifetime=args.refresh_token_lifetime,
        upload_url_lifetime=args.upload_url_lifetime,
        download_url_lifetime=args.download_url_lifetime,
        download_url_style=args.download_url_style,
        session_lifetime=args.session_lifetime,
        total_size=args.quota,
        max_file_size=args.max_file_size,
        list_page_size=args.list_page_size,
        parts_page_size=args.parts_page_size,
        lenient_complete=args.lenient_complete,
        upload_id_status=args.upload_id_status,
        min_part_size=args.min_part_size,
        rate_limits={op: (r, b) for op, r, b in args.rate_limit},
        retry_after_ms=args.retry_after_ms,
        seed=args.seed,
    )
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    root = args.root or xdg_dir("data") / "drive"
    serve.run(root, "127.0.0.1" if args.host == "localhost" else args.host, args.port, opts, faults)
    return 0
