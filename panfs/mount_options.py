"""``-o`` mount options as mount(8) and fstab users write them.

Owns: parsing ``-o uid=,gid=,umask=,ro,allow_other,default_permissions,config=FILE``
into ``MountOptions``, accepting and ignoring mount(8)'s generic options
(``defaults``, ``_netdev``, ``noatime``, …), and refusing anything else in one
line. Must not: mount anything.
"""

from __future__ import annotations

import grp
import pwd
from dataclasses import dataclass, field

from panfs.errors import UsageError

# mount(8)/fstab options that mean nothing to a FUSE filesystem here: accepted, ignored
IGNORED = frozenset(
    {
        "rw", "dev", "nodev", "suid", "nosuid", "exec", "noexec", "auto", "noauto", "user",
        "users", "nouser", "owner", "group", "defaults", "async", "sync", "atime", "noatime",
        "relatime", "strictatime", "nodiratime", "lazytime", "_netdev", "nofail",
    }
)  # fmt: skip
FLAGS = ("ro", "allow_other", "default_permissions", "foreground")
VALUES = ("uid", "gid", "umask", "config")
KNOWN = "uid=, gid=, umask=, ro, allow_other, default_permissions, config=FILE"


@dataclass(frozen=True)
class MountOptions:
    uid: int | None = None  # owner shown for files whose owner the drive cannot hold
    gid: int | None = None
    umask: int = 0  # permission bits taken away from every mode shown
    ro: bool = False
    allow_other: bool = False
    foreground: bool = False
    config: str | None = None
    extra: tuple[str, ...] = field(default=())


def _id(kind: str, value: str) -> int:
    if value.isdigit():
        return int(value)
    try:
        return pwd.getpwnam(value).pw_uid if kind == "uid" else grp.getgrnam(value).gr_gid
    except KeyError:
        raise UsageError(
            f"mount option {kind}={value}: no such {'user' if kind == 'uid' else 'group'}"
        ) from None


def parse(raw: list[str]) -> MountOptions:
    values: dict[str, object] = {}
    for chunk in raw:
        for opt in filter(None, (o.strip() for o in chunk.split(","))):
            key, eq, value = opt.partition("=")
            if key in IGNORED or key.startswith("x-") or key == "comment":
                continue
            if eq and key in VALUES:
                if key in ("uid", "gid"):
                    values[key] = _id(key, value)
                elif key == "umask":
                    try:
                        mask = int(value, 8)
                    except ValueError:
                        mask = -1
                    if not 0 <= mask <= 0o777:
                        raise UsageError(
                            f"mount option umask={value}: expected octal like 022 or 077"
                        )
                    values["umask"] = mask
                else:
                    values[key] = value
            elif not eq and key in FLAGS:
                if key != "default_permissions":  # always on: the kernel checks modes
                    values[key] = True
            else:
                raise UsageError(f"unknown mount option {opt!r}; known: {KNOWN}")
    return MountOptions(**values)  # type: ignore[arg-type]
