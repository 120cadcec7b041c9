"""The YAML config: schema, defaults, validation, and the XDG default paths.

Owns: turning a config file (or none) into a typed ``Config``; every key lives in
``SCHEMA`` with its type, default and one-line meaning, and ``config.example.yaml``
documents the same keys (a test holds the two together). Must not: open network
connections, create directories, or read tokens from anywhere but the file.

Errors are ``ConfigError`` with one line naming the file, the key and the fix.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from panfs.errors import ConfigError

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "kib": KiB, "ki": KiB,
    "m": 1000**2, "mb": 1000**2, "mib": MiB, "mi": MiB,
    "g": 1000**3, "gb": 1000**3, "gib": GiB, "gi": GiB,
    "t": 1000**4, "tb": 1000**4, "tib": 1024**4, "ti": 1024**4,
}  # fmt: skip


def parse_size(value: object) -> int:
    """``8MiB`` → 8388608; ints pass through. Raises ``ValueError`` on anything else."""
    if isinstance(value, bool):
        raise ValueError(f"not a size: {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"negative size: {value}")
        return value
    if not isinstance(value, str):
        raise ValueError(f"not a size: {value!r}")
    m = _SIZE_RE.match(value)
    if not m:
        raise ValueError(f"not a size: {value!r} (write e.g. 16MiB, 2GiB or 1048576)")
    unit = (m.group(2) or "").lower()
    return int(float(m.group(1)) * _UNITS[unit])


def format_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def xdg_dir(kind: str) -> Path:
    """``config`` / ``cache`` / ``data`` / ``state`` base directory for panfs."""
    env = {
        "config": ("XDG_CONFIG_HOME", ".config"),
        "cache": ("XDG_CACHE_HOME", ".cache"),
        "data": ("XDG_DATA_HOME", ".local/share"),
        "state": ("XDG_STATE_HOME", ".local/state"),
    }[kind]
    base = os.environ.get(env[0]) or str(Path.home() / env[1])
    return Path(base) / "panfs"


def default_config_path() -> Path:
    return xdg_dir("config") / "config.yaml"


def _str(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError("expected a string")
    return v


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError("expected true or false")
    return v


def _pos_int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError("expected a whole number ≥ 1")
    return v


def _seconds(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or v <= 0:
        raise ValueError("expected a number of seconds > 0")
    return float(v)


def _drive(v: Any) -> str:
    if v not in ("default", "resource", "backup"):
        raise ValueError("expected one of default, resource, backup")
    return str(v)


def _part_size(v: Any) -> int:
    n = parse_size(v)
    if n < 100 * KiB or n > 5 * GiB:
        raise ValueError("a part must be between 100KiB and 5GiB")
    return n


def _size(v: Any) -> int:
    return parse_size(v)


@dataclass(frozen=True)
class Key:
    parse: Callable[[Any], Any]
    default: Any
    doc: str


# Every key panfs reads. ``None`` default = optional / derived.
SCHEMA: dict[str, Key] = {
    "remote.endpoint": Key(_str, None, "Open API base URL, e.g. https://openapi.alipan.com"),
    "remote.token_url": Key(_str, None, "OAuth token URL; default ENDPOINT/oauth/access_token"),
    "remote.client_id": Key(_str, None, "app id"),
    "remote.client_secret": Key(_str, "", "app secret (empty for PKCE apps)"),
    "remote.refresh_token": Key(_str, None, "first refresh token; rotated ones live in cache.dir"),
    "remote.account_file": Key(_str, None, "a drive server's account.yaml instead of the above"),
    "remote.drive": Key(_drive, "default", "which drive: default, resource or backup"),
    "remote.connect_timeout": Key(_seconds, 10.0, "seconds to open a connection"),
    "remote.read_timeout": Key(_seconds, 60.0, "seconds without a byte before a request fails"),
    "remote.max_backoff": Key(_seconds, 60.0, "cap on the retry back-off, seconds"),
    "cache.dir": Key(_str, None, "cache and state directory; default XDG cache dir/panfs"),
    "cache.max_size": Key(_size, 10 * GiB, "bound on clean cached data; dirty data never evicted"),
    "cache.min_free": Key(_size, 256 * MiB, "disk space writes leave free (journal headroom)"),
    "upload.part_size": Key(_part_size, 16 * MiB, "multipart part size, grown to ≤ 10000 parts"),
    "upload.concurrency": Key(_pos_int, 2, "files uploaded at once (one part stream each)"),
    "upload.rapid_upload": Key(_bool, True, "try pre_hash / content-hash rapid upload"),
    "upload.rapid_threshold": Key(_size, 100 * MiB, "files at least this big try pre_hash first"),
    "upload.url_margin": Key(_seconds, 300.0, "refresh upload URLs this long before expiry"),
    "mount.list_ttl": Key(_seconds, 30.0, "seconds a remote folder listing stays fresh"),
    "mount.allow_other": Key(_bool, False, "let other users see the mount"),
    "mount.read_memory": Key(_size, 16 * MiB, "bound on drive bytes read ahead and in flight"),
}


@dataclass
class Config:
    """Validated settings; ``values`` keyed as in ``SCHEMA``."""

    path: Path | None
    values: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    @property
    def embedded(self) -> bool:
        """No account configured: use the embedded drive server."""
        return self.values["remote.endpoint"] is None and self.values["remote.account_file"] is None

    @property
    def cache_dir(self) -> Path:
        d = self.values["cache.dir"]
        return Path(d).expanduser() if d else xdg_dir("cache")


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        name = f"{prefix}{k}"
        if isinstance(v, Mapping) and name in {"remote", "cache", "upload", "mount"}:
            out.update(_flatten(v, name + "."))
        else:
            out[name] = v
    return out


def from_mapping(data: Mapping[str, Any] | None, path: Path | None = None) -> Config:
    where = str(path) if path else "config"
    flat = _flatten(data or {})
    values: dict[str, Any] = {}
    for key, raw in flat.items():
        spec = SCHEMA.get(key)
        if spec is None:
            close = difflib.get_close_matches(key, SCHEMA, n=1, cutoff=0.7)
            hint = f"; did you mean {close[0]}?" if close else f"; known keys: {', '.join(SCHEMA)}"
            raise ConfigError(f"{where}: unknown key {key!r}{hint}")
        if raw is None:
            continue
        try:
            values[key] = spec.parse(raw)
        except ValueError as e:
            raise ConfigError(f"{where}: {key}: {e} (got {raw!r})") from None
    for key, spec in SCHEMA.items():
        values.setdefault(key, spec.default)
    cfg = Config(path=path, values=values)
    _check_remote(cfg, where)
    return cfg


def _check_remote(cfg: Config, where: str) -> None:
    v = cfg.values
    if v["remote.account_file"] is not None or v["remote.endpoint"] is None:
        if v["remote.endpoint"] is None and any(
            v[k] for k in ("remote.client_id", "remote.refresh_token")
        ):
            raise ConfigError(f"{where}: remote.endpoint is missing; set it next to client_id")
        return
    for key in ("remote.client_id", "remote.refresh_token"):
        if not v[key]:
            raise ConfigError(
                f"{where}: {key} is missing; set it (or remote.account_file) under remote:"
            )


def load(path: Path | str | None = None) -> Config:
    """Load ``path``, or the default path if it exists, or the embedded default."""
    explicit = path is not None
    p = Path(path).expanduser() if path is not None else default_config_path()
    if not p.exists():
        if explicit:
            raise ConfigError(f"{p}: no such config file; create it from config.example.yaml")
        return from_mapping({}, None)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{p}: cannot read config: {e.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{p}: not valid YAML{at}; fix the syntax") from None
    if data is not None and not isinstance(data, Mapping):
        raise ConfigError(f"{p}: expected a mapping of sections (remote:, cache:, upload:)")
    return from_mapping(data, p)
