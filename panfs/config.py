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
from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import yaml

from panfs.errors import ConfigError

_S = TypeVar("_S")

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


def _delay(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
        raise ValueError("expected a number of seconds >= 0")
    return float(v)


def _suffix(v: Any) -> str:
    if not isinstance(v, str) or not v or "/" in v or len(v.encode()) > 64:
        raise ValueError("expected a short file-name suffix such as .panfslink")
    return v


def _drive(v: Any) -> str:
    if v not in ("default", "resource", "backup"):
        raise ValueError("expected one of default, resource, backup")
    return str(v)


def _part_size(v: Any) -> int:
    n = parse_size(v)
    if n < 100 * KiB or n > 5 * GiB:
        raise ValueError("a part must be between 100KiB and 5GiB")
    return n


def _rate_limits(v: Any) -> dict[str, float]:
    if not isinstance(v, Mapping):
        raise ValueError("expected a mapping of endpoint to requests per second, e.g. {list: 4}")
    out: dict[str, float] = {}
    for k, r in v.items():
        if isinstance(r, bool) or not isinstance(r, int | float) or r < 0:
            raise ValueError(f"{k}: expected requests per second >= 0 (0 = no limit)")
        out[str(k)] = float(r)
    return out


TOKEN_STYLES = ("json", "query")  # how a token URL is asked: POST a JSON body, or GET


def _token_style(v: Any) -> str:
    if v not in TOKEN_STYLES:
        raise ValueError("expected json (POST a JSON body) or query (GET with parameters)")
    return str(v)


def _size(v: Any) -> int:
    return parse_size(v)


def _level(v: Any) -> str:
    name = str(v).upper()
    if name not in LOG_LEVELS:
        raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}")
    return name


def _count(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ValueError("expected a whole number ≥ 0")
    return v


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True)
class Key:
    parse: Callable[[Any], Any]
    default: Any
    doc: str


# Every key panfs reads. ``None`` default = optional / derived.
SCHEMA: dict[str, Key] = {
    "remote.endpoint": Key(_str, None, "Open API base URL, e.g. https://openapi.alipan.com"),
    "remote.token_url": Key(_str, None, "OAuth token URL; default ENDPOINT/oauth/access_token"),
    "remote.token_style": Key(_token_style, "json", "token URL shape: json (POST) or query (GET)"),
    "remote.client_id": Key(_str, None, "app id"),
    "remote.client_secret": Key(_str, "", "app secret (empty for PKCE apps)"),
    "remote.refresh_token": Key(_str, None, "first refresh token; rotated ones live in cache.dir"),
    "remote.account_file": Key(_str, None, "a drive server's account.yaml instead of the above"),
    "remote.drive": Key(_drive, "default", "which drive: default, resource or backup"),
    "remote.connect_timeout": Key(_seconds, 10.0, "seconds to open a connection"),
    "remote.read_timeout": Key(_seconds, 60.0, "seconds without a byte before a request fails"),
    "remote.max_backoff": Key(_seconds, 60.0, "cap on the retry back-off, seconds"),
    "remote.unreachable_after": Key(
        _seconds, 30.0, "seconds of failing uploads with no part acknowledged: unreachable"
    ),
    "remote.rate_limits": Key(
        _rate_limits, {}, "requests/s per endpoint over the official list 4, getDownloadUrl 1, * 15"
    ),
    "cache.dir": Key(_str, None, "clean, re-downloadable data; default XDG cache dir/panfs"),
    "cache.max_size": Key(
        _size, 10 * GiB, "bound on clean cached data (no larger file kept); dirty never evicted"
    ),
    "cache.min_free": Key(_size, 256 * MiB, "disk space writes leave free (journal headroom)"),
    "upload.part_size": Key(_part_size, 16 * MiB, "multipart part size, grown to ≤ 10000 parts"),
    "upload.concurrency": Key(_pos_int, 2, "files uploaded at once (one part stream each)"),
    "upload.rapid_upload": Key(_bool, True, "try pre_hash / content-hash rapid upload"),
    "upload.rapid_threshold": Key(_size, 100 * MiB, "files at least this big try pre_hash first"),
    "upload.url_margin": Key(_seconds, 300.0, "refresh upload URLs this long before expiry"),
    "upload.delay": Key(
        _delay,
        2.0,
        "write-back delay: seconds a closed file waits (a burst"
        " of saves uploads once); umount --wait does not wait it out",
    ),
    "mount.list_ttl": Key(_seconds, 30.0, "seconds a remote folder listing stays fresh"),
    "mount.link_suffix": Key(
        _suffix,
        ".panfslink",
        "symbolic links are stored on the drive as small files whose name ends with this",
    ),
    "mount.allow_other": Key(_bool, False, "let other users see the mount"),
    "mount.read_memory": Key(_size, 16 * MiB, "bound on drive bytes read ahead and in flight"),
    "state.dir": Key(
        _str, None, "journal, tokens, data not yet uploaded; default XDG state dir/panfs"
    ),
    "log.file": Key(_str, None, "the daemon's log; default STATE_DIR/panfs.log"),
    "log.level": Key(_level, "INFO", "DEBUG, INFO, WARNING or ERROR"),
    "log.max_size": Key(_size, 10 * MiB, "rotate the log at this size"),
    "log.backups": Key(_count, 3, "rotated logs kept (panfs.log.1 ...)"),
}


# Typed sections: one frozen dataclass per config section, built once from ``SCHEMA``
# (which holds every default, once). Field names are the keys after the section's dot.
@dataclass(frozen=True)
class RemoteSection:
    endpoint: str | None
    token_url: str | None
    token_style: str
    client_id: str | None
    client_secret: str
    refresh_token: str | None
    account_file: str | None
    drive: str
    connect_timeout: float
    read_timeout: float
    max_backoff: float
    unreachable_after: float
    rate_limits: dict[str, float]


@dataclass(frozen=True)
class CacheSection:
    dir: str | None
    max_size: int
    min_free: int


@dataclass(frozen=True)
class UploadSection:
    part_size: int
    concurrency: int
    rapid_upload: bool
    rapid_threshold: int
    url_margin: float
    delay: float


@dataclass(frozen=True)
class MountSection:
    list_ttl: float
    link_suffix: str
    allow_other: bool
    read_memory: int


@dataclass(frozen=True)
class StateSection:
    dir: str | None


@dataclass(frozen=True)
class LogSection:
    file: str | None
    level: str
    max_size: int
    backups: int


_SECTION_TYPES: dict[str, type] = {
    "remote": RemoteSection,
    "cache": CacheSection,
    "upload": UploadSection,
    "mount": MountSection,
    "state": StateSection,
    "log": LogSection,
}
SECTIONS = tuple(_SECTION_TYPES)


def _build(cls: type[_S], section: str, values: Mapping[str, Any]) -> _S:
    return cls(**{f.name: values[f"{section}.{f.name}"] for f in fields(cls)})  # type: ignore[arg-type]


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
        """Where clean, re-downloadable data lives."""
        d = self.values["cache.dir"]
        return Path(d).expanduser() if d else xdg_dir("cache")

    @property
    def state_dir(self) -> Path:
        """Where the journal, the tokens and data not yet on the drive live: ``state.dir``;
        with only ``cache.dir`` set, that one folder holds both (the layout before state.dir)."""
        d = self.values["state.dir"]
        if d:
            return Path(d).expanduser()
        if self.values["cache.dir"]:
            return self.cache_dir
        return xdg_dir("state")

    @property
    def log_file(self) -> Path:
        f = self.values["log.file"]
        return Path(f).expanduser() if f else self.state_dir / "panfs.log"

    # -- typed sections (built once, on first use) ---------------------------------------
    @cached_property
    def remote(self) -> RemoteSection:
        return _build(RemoteSection, "remote", self.values)

    @cached_property
    def cache(self) -> CacheSection:
        return _build(CacheSection, "cache", self.values)

    @cached_property
    def upload(self) -> UploadSection:
        return _build(UploadSection, "upload", self.values)

    @cached_property
    def mount(self) -> MountSection:
        return _build(MountSection, "mount", self.values)

    @cached_property
    def state(self) -> StateSection:
        return _build(StateSection, "state", self.values)

    @cached_property
    def log(self) -> LogSection:
        return _build(LogSection, "log", self.values)


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        name = f"{prefix}{k}"
        if isinstance(v, Mapping) and name in SECTIONS:
            out.update(_flatten(v, name + "."))
        elif v is None and name in SECTIONS:
            continue  # a section whose keys are all commented out
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
        if key == "remote.client_id" and v["remote.token_url"]:
            continue  # a token proxy holds the app's id
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
    except UnicodeDecodeError as e:
        line = p.read_bytes()[: e.start].count(b"\n") + 1
        raise ConfigError(
            f"{p}: not UTF-8 text (byte 0x{e.object[e.start]:02x} on line {line}); save it as UTF-8"
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{p}: not valid YAML{at}; fix the syntax") from None
    if data is not None and not isinstance(data, Mapping):
        raise ConfigError(f"{p}: expected a mapping of sections (remote:, cache:, upload:)")
    if data is not None and any(not isinstance(k, str) for k in data):
        raise ConfigError(f"{p}: section names must be words like remote:, cache:")
    return from_mapping(data, p)
