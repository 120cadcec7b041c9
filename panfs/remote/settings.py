"""Where and how to reach the drive: ``RemoteSettings`` from the config or an account file.

Owns: turning ``remote.*`` keys (or a drive server's ``account.yaml``) into one
immutable settings value. Must not: open connections or read tokens from state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from panfs.config import Config
from panfs.errors import ConfigError


@dataclass(frozen=True)
class RemoteSettings:
    endpoint: str
    token_url: str
    client_id: str
    client_secret: str
    refresh_token: str
    drive: str = "default"
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    max_backoff: float = 60.0
    api_attempts: int = 5
    # requests per second per endpoint ("list", "getDownloadUrl", "*"): the pacer's limits
    rate_limits: Mapping[str, float] | None = None
    # how the token URL is asked: "json" (POST a JSON body) or "query" (GET with the fields
    # in the query string, as some public token proxies want)
    token_style: str = "json"


def from_account_file(path: Path, **over: object) -> RemoteSettings:
    try:
        acct = yaml.safe_load(Path(path).expanduser().read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"remote.account_file: cannot read {path}: {e}") from None
    if not isinstance(acct, dict) or not all(
        k in acct for k in ("endpoint", "client_id", "refresh_token")
    ):
        raise ConfigError(f"remote.account_file: {path} lacks endpoint/client_id/refresh_token")
    endpoint = str(acct["endpoint"]).rstrip("/")
    return RemoteSettings(
        endpoint=endpoint,
        token_url=endpoint + "/oauth/access_token",
        client_id=str(acct["client_id"]),
        client_secret=str(acct.get("client_secret") or ""),
        refresh_token=str(acct["refresh_token"]),
        **over,  # type: ignore[arg-type]
    )


def from_config(cfg: Config) -> RemoteSettings:
    common = {
        "drive": cfg["remote.drive"],
        "connect_timeout": cfg["remote.connect_timeout"],
        "read_timeout": cfg["remote.read_timeout"],
        "max_backoff": cfg["remote.max_backoff"],
        "rate_limits": cfg["remote.rate_limits"],
        "token_style": cfg["remote.token_style"],
    }
    if cfg["remote.account_file"]:
        return from_account_file(Path(cfg["remote.account_file"]), **common)
    endpoint = str(cfg["remote.endpoint"]).rstrip("/")
    return RemoteSettings(
        endpoint=endpoint,
        token_url=cfg["remote.token_url"] or endpoint + "/oauth/access_token",
        client_id=cfg["remote.client_id"],
        client_secret=cfg["remote.client_secret"] or "",
        refresh_token=cfg["remote.refresh_token"],
        **common,
    )
