"""Every error panfs raises on purpose, classified where it is understood.

Owns: the exception tree and the errno each error stands for. Must not: import
anything of panfs, do I/O, or know about FUSE (``fs.py`` maps ``errno`` to
``FUSEError`` in one place).

The tree::

    PanfsError                      errno EIO unless stated
    ├── ConfigError                 bad config file / key / value (EINVAL)
    ├── UsageError                  bad command-line use (EINVAL)
    ├── LocalError                  local side
    │   ├── CacheFullError          cache disk full (ENOSPC)
    │   ├── NameTooLongError        name over 1024 UTF-8 bytes (ENAMETOOLONG)
    │   ├── NotFoundError           no such entry (ENOENT)
    │   ├── ExistsError             entry exists (EEXIST)
    │   ├── NotEmptyError           folder not empty (ENOTEMPTY)
    │   ├── IsDirError              is a folder (EISDIR)
    │   ├── NotDirError             not a folder (ENOTDIR)
    │   ├── UnsupportedError        the drive cannot represent this (EPERM/ENOTSUP)
    │   ├── SourceChangedError      a local file changed under an upload
    │   ├── LockedError             another daemon owns this cache dir (EBUSY)
    │   └── StateError              the state database refused a write: its disk full
    │                               (ENOSPC) or failing (EIO)
    ├── RemoteError                 anything the service answered or failed to answer
    │   ├── TransientError          worth retrying: 429, 5xx, gateway garbage, network
    │   │   ├── RateLimitedError    429, ``retry_after`` seconds
    │   │   └── NetworkError        no answer: connect/read/write failure, cut connection
    │   └── PermanentError          retrying the same request cannot help
    │       ├── AuthError           token refused for good (re-authorise) (EACCES)
    │       ├── RemoteNotFoundError 404-ish codes (ENOENT)
    │       │   └── SessionGone     NotFound.UploadId / NoSuchUpload: the upload session is gone
    │       ├── RemoteExistsError   name conflict (EEXIST)
    │       ├── QuotaError          quota exhausted (ENOSPC)
    │       ├── TooLargeError       413 per-file cap (EFBIG)
    │       ├── PartError           an OSS part PUT refusal, ``code`` says which
    │       │   └── PartConflict    PartAlreadyExist / PartNotSequential: re-list and realign
    │       ├── CompleteRejected    complete failed a check (part list, size, content hash)
    │       └── NoDownloadUrl       the drive gives no usable download URL for a file
    └── UploadFailed                an upload stopped for a permanent reason

A ``RemoteError`` always carries ``status`` (HTTP status or 0 when there was no
answer), ``code`` (the service's code, or ``""``) and ``body_start`` (the first
200 characters of the raw body), so a message never depends on parsing JSON.
"""

from __future__ import annotations

import errno as _errno


class PanfsError(Exception):
    """Base of every deliberate panfs error."""

    errno: int = _errno.EIO
    exit_code: int = 1  # panfs.exitcodes: runtime failure unless a subclass says otherwise

    def __init__(self, message: str, *, err: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if err is not None:
            self.errno = err

    def __str__(self) -> str:
        return self.message


class ConfigError(PanfsError):
    """A config file, key or value is wrong; the message names the key and the fix."""

    errno = _errno.EINVAL
    exit_code = 2


class UsageError(PanfsError):
    """The command line is wrong; the message says how to call it."""

    errno = _errno.EINVAL
    exit_code = 2


class LocalError(PanfsError):
    """Something on this machine: cache, names, local files."""


class CacheFullError(LocalError):
    errno = _errno.ENOSPC


class NameTooLongError(LocalError):
    errno = _errno.ENAMETOOLONG


class NotFoundError(LocalError):
    errno = _errno.ENOENT


class ExistsError(LocalError):
    errno = _errno.EEXIST


class NotEmptyError(LocalError):
    errno = _errno.ENOTEMPTY


class IsDirError(LocalError):
    errno = _errno.EISDIR


class NotDirError(LocalError):
    errno = _errno.ENOTDIR


class UnsupportedError(LocalError):
    errno = _errno.EPERM


class SourceChangedError(LocalError):
    """The local bytes of an upload changed since its session was planned."""


class LockedError(LocalError):
    errno = _errno.EBUSY


class StateError(LocalError):
    """The state database refused a write (full or failing disk): nothing of the step was
    kept; the step may be tried again once the disk takes it."""


class RemoteError(PanfsError):
    """The service refused, failed, or did not answer."""

    transient = False

    def __init__(
        self,
        message: str,
        *,
        status: int = 0,
        code: str = "",
        body_start: str = "",
        err: int | None = None,
    ) -> None:
        super().__init__(message, err=err)
        self.status = status
        self.code = code
        self.body_start = body_start

    def describe(self) -> str:
        """One line: status, code and what the service said."""
        parts = [f"HTTP {self.status}" if self.status else "no answer"]
        if self.code:
            parts.append(self.code)
        parts.append(self.message)
        return ": ".join(parts)


class TransientError(RemoteError):
    """Retrying later can succeed."""

    transient = True


class RateLimitedError(TransientError):
    """429; ``retry_after`` is in seconds (from ``x-retry-after`` milliseconds)."""

    def __init__(self, message: str, *, retry_after: float, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after = retry_after


class NetworkError(TransientError):
    """No (complete) answer: connection refused, reset, cut, timed out."""


class PermanentError(RemoteError):
    """The same request will fail again."""


class AuthError(PermanentError):
    """The drive refused the account's credentials: the fix is in the config (exit 2)."""

    errno = _errno.EACCES
    exit_code = 2  # the fix is in the config (a token, the app's id or secret)


class RemoteNotFoundError(PermanentError):
    errno = _errno.ENOENT


class RemoteExistsError(PermanentError):
    errno = _errno.EEXIST


class QuotaError(PermanentError):
    errno = _errno.ENOSPC


class TooLargeError(PermanentError):
    errno = _errno.EFBIG


class PartError(PermanentError):
    """An upload-host (OSS) refusal of a part PUT.

    ``code`` is one of ``PartNotSequential``, ``PartAlreadyExist``, ``AccessDenied``
    (expired URL), ``SignatureDoesNotMatch``, ``NoSuchUpload``, ``InvalidArgument``.
    ``part_number`` and ``etag`` (upper-case hex, no quotes) come from the XML body when present.
    """

    def __init__(
        self,
        message: str,
        *,
        part_number: int | None = None,
        etag: str | None = None,
        **kw: object,
    ) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.part_number = part_number
        self.etag = etag

    @property
    def url_expired(self) -> bool:
        return self.code == "AccessDenied" and "expired" in self.message.lower()


class SessionGone(RemoteNotFoundError):
    """The upload session is gone (``NotFound.UploadId`` from the API, ``NoSuchUpload``
    from the upload host): the session starts over, after checking it did not complete."""


class PartConflict(PartError):
    """``PartAlreadyExist`` / ``PartNotSequential``: the drive's parts differ from what the
    sender believed; re-list them and realign, never skip."""


class CompleteRejected(PermanentError):
    """``complete`` failed one of the drive's checks (a part too small, the parts not adding
    up to the size, the content hash): re-list the parts and send what the drive lacks."""


class NoDownloadUrl(PermanentError):
    """The drive answers ``getDownloadUrl`` without a usable URL (empty or null ``url``)."""


class CreateMaybeApplied(PanfsError):
    """A create that makes the file at once (rapid, empty) would be sent again after an
    attempt whose answer was lost: the caller looks for the file before another create."""


class UploadFailed(PanfsError):
    """An upload stopped for a permanent reason, recorded in the journal."""
