"""systemd readiness: send ``READY=1`` etc. to ``$NOTIFY_SOCKET`` (for ``Type=notify`` units).

Owns: one datagram per call. Must not: fail the caller: without a socket, or on
any socket error, it does nothing.
"""

from __future__ import annotations

import os
import socket


def notify(message: str) -> None:
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(addr)
            s.sendall(message.encode())
    except OSError:
        pass
