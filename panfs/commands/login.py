"""``panfs login``: a QR-code login that writes a working ``remote:`` section into the config.

Owns: choosing the way in (the user's own app with ``client_id``/``client_secret``,
or a token proxy at ``remote.token_url`` in its ``json`` or ``query`` shape), drawing
the QR code in the terminal (segno) and printing its URL, polling until the phone
approves, and writing the config (mode 0600, temp + fsync + rename, other keys kept),
then saying what to run next. Every failure is one line. Must not: speak HTTP itself
(``panfs.remote.login`` does) or touch the token state of a mount.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from panfs import config
from panfs.atomic import write_atomic
from panfs.errors import AuthError, ConfigError, TransientError, UsageError

HELP = "log in to the drive with a QR code and write the config"
EXAMPLE = """examples:
  panfs login --client-id ID --client-secret SECRET     your own app: scan the QR code
  panfs login --token-url https://proxy.example/token   through a token proxy
  panfs login --no-qr                                   print the URL only (no terminal art)"""

OFFICIAL = {"openapi.alipan.com", "openapi.aliyundrive.com"}
OFFICIAL_ENDPOINT = "https://openapi.alipan.com"
AUTHORIZE_PAGE = "https://www.alipan.com/o/oauth/authorize?sid="
POLL_EVERY = 1.0  # seconds between status polls
POLL_FAILURES = 5  # transient failures in a row before the login gives up
GIVE_UP = 600.0  # seconds: a QR code the service never expires still ends here


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="config file to write (default: XDG config dir)")
    p.add_argument("--no-qr", action="store_true", help="print the URL only, no QR code")
    p.add_argument("--endpoint", help=f"Open API base URL (default {OFFICIAL_ENDPOINT})")
    p.add_argument("--client-id", help="your app's client id")
    p.add_argument("--client-secret", help="your app's client secret")
    p.add_argument("--token-url", help="a token proxy's URL (instead of your own app)")
    p.add_argument(
        "--token-style",
        choices=config.TOKEN_STYLES,
        help="the proxy's shape: json (POST JSON, the default) or query (GET with parameters)",
    )
    p.add_argument(
        "--qrcode-url",
        help="where to ask for the QR code (default: the endpoint's, or the proxy's "
        "…/oauth/authorize/qrcode beside its …/oauth/access_token)",
    )


def _read_raw(path: Path) -> dict[str, Any]:
    """The config file as a mapping (empty if there is none yet)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config: {e.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        raise ConfigError(f"{path}: not valid YAML; fix the syntax or remove the file") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping) or not isinstance(data.get("remote") or {}, Mapping):
        raise ConfigError(f"{path}: expected a mapping of sections (remote:, cache:, upload:)")
    return dict(data)


class Plan:
    """Where each step of the login goes, from the options and the config's ``remote:``."""

    def __init__(self, args: argparse.Namespace, remote: Mapping[str, Any]) -> None:
        def pick(name: str) -> str:
            value = getattr(args, name)
            return str(value if value is not None else remote.get(name) or "")

        self.endpoint = (pick("endpoint") or OFFICIAL_ENDPOINT).rstrip("/")
        self.client_id = pick("client_id")
        self.client_secret = pick("client_secret")
        self.token_url = pick("token_url")
        self.style = pick("token_style") or "json"
        if self.style not in config.TOKEN_STYLES:
            raise ConfigError(f"remote.token_style: {self.style!r} is not json or query")
        self.own_app = bool(self.client_id and self.client_secret)
        if not self.own_app and not self.token_url:
            raise UsageError(
                "no way to log in: give your app's --client-id and --client-secret, or a token "
                "proxy's --token-url (or set them under remote: in the config)"
            )
        if self.own_app:
            self.qrcode_url = args.qrcode_url or self.endpoint + "/oauth/authorize/qrcode"
            self.grant_url = self.token_url or self.endpoint + "/oauth/access_token"
        else:
            self.grant_url = self.token_url
            suffix = "/oauth/access_token"
            derived = self.token_url[: -len(suffix)] + "/oauth/authorize/qrcode"
            self.qrcode_url = args.qrcode_url or (
                derived if self.token_url.endswith(suffix) else ""
            )
            if not self.qrcode_url:
                raise UsageError(
                    f"the token proxy {self.token_url} has no …/oauth/access_token path to find "
                    "its QR-code URL beside; give it with --qrcode-url"
                )

    @property
    def credentials(self) -> dict[str, str]:
        if self.own_app:
            return {"client_id": self.client_id, "client_secret": self.client_secret}
        return {"client_id": self.client_id} if self.client_id else {}

    def authorize_page(self, sid: str) -> str:
        """What the QR code carries: the page the phone opens to approve."""
        if urlsplit(self.endpoint).hostname in OFFICIAL:
            return AUTHORIZE_PAGE + sid
        return f"{self.endpoint}/o/oauth/authorize?sid={sid}"

    def remote_section(self, refresh_token: str) -> dict[str, Any]:
        out: dict[str, Any] = {"endpoint": self.endpoint, "refresh_token": refresh_token}
        if self.client_id:
            out["client_id"] = self.client_id
        if self.own_app:
            out["client_secret"] = self.client_secret
        if self.token_url:
            out["token_url"] = self.token_url
        if not self.own_app:
            out["token_style"] = self.style
        return out


def _show(url: str, qr: bool) -> None:
    if qr:
        import segno

        segno.make(url, error="l").terminal(out=sys.stdout, compact=True)
    print(f"Scan the QR code with the Aliyun Drive app, or open: {url}", flush=True)


async def _login(plan: Plan, qr: bool) -> str:
    import httpx
    import trio

    from panfs.remote import login as api

    timeout = httpx.Timeout(30.0, connect=10.0)
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as http:
        pending = await api.request_qrcode(http, plan.qrcode_url, plan.credentials)
        _show(plan.authorize_page(pending.sid), qr)
        scanned = False
        failures = 0
        with trio.move_on_after(GIVE_UP):
            while True:
                try:
                    status, code = await api.qrcode_status(http, plan.endpoint, pending.sid)
                except TransientError:  # a 5xx, a 429 or a dropped poll: poll again, a few times
                    failures += 1
                    if failures >= POLL_FAILURES:
                        raise
                    await trio.sleep(POLL_EVERY * failures)
                    continue
                failures = 0
                if status == api.SUCCESS and code:
                    fields = {**plan.credentials, "grant_type": "authorization_code", "code": code}
                    tokens = await api.grant_tokens(http, plan.grant_url, plan.style, fields)
                    return tokens.refresh_token
                if status == api.EXPIRED:
                    raise AuthError(
                        "the QR code expired before it was approved; run panfs login again"
                    )
                if status == api.SCANNED and not scanned:
                    scanned = True
                    print("Scanned; confirm the login on the phone.", flush=True)
                await trio.sleep(POLL_EVERY)
        raise AuthError(
            f"no approval within {int(GIVE_UP)} s; run panfs login again and scan the new code"
        )


def write_config(path: Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` as YAML, mode 0600: temp file, fsync, rename, fsync the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(dict(data), sort_keys=False, allow_unicode=True)
    write_atomic(path, text, 0o600)


def run(args: argparse.Namespace) -> int:
    path = (args.config or config.default_config_path()).expanduser()
    raw = _read_raw(path)
    remote = dict(raw.get("remote") or {})
    plan = Plan(args, remote)
    import trio  # here, not at the top: every panfs command imports this module

    refresh_token = trio.run(_login, plan, not args.no_qr)
    remote.pop("account_file", None)  # the login's account replaces a drive server's
    remote.update(plan.remote_section(refresh_token))
    data = {"remote": remote, **{k: v for k, v in raw.items() if k != "remote"}}
    config.from_mapping(data, path)  # what is written must load
    write_config(path, data)
    where = "" if args.config is None else f" --config {path}"
    print(f"Logged in; wrote {path}.")
    print(f"Next: mkdir -p ~/pan && panfs mount ~/pan{where}")
    return 0
