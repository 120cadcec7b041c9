"""Run the drive server: bootstrap the account, bind, print the address, serve with hypercorn.

Owns: the first-start account (``<root>/account.yaml``, mode 0600, written
temp + fsync + rename), binding the listening socket ourselves (so ``--port 0``
can report the port it got), and hypercorn on trio with a clean shutdown on
SIGTERM/SIGINT. Must not: hold protocol logic.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import hypercorn.trio.tcp_server as hypercorn_tcp
import trio
import yaml
from hypercorn.config import Config as HyperConfig
from hypercorn.trio import serve as hyper_serve

from panfs.server.app import DriveApp
from panfs.server.faults import Faults
from panfs.server.options import ServerOptions
from panfs.server.store import Store

log = logging.getLogger("panfs.server")
RECV_SIZE = 1 << 20  # bytes per socket read of the HTTP server


def write_private(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def bootstrap(store: Store, app: DriveApp, root: Path, url: str) -> dict[str, Any]:
    path = root / "account.yaml"
    if path.exists():
        acct: dict[str, Any] = yaml.safe_load(path.read_text())
        if acct.get("endpoint") != url:
            acct["endpoint"] = url
            write_private(path, acct)
        return acct
    acct = {
        "endpoint": url,
        "client_id": store.get_meta("client_id"),
        "client_secret": store.get_meta("client_secret"),
        "refresh_token": app.new_refresh_token(),
        "admin_token": app.admin_token,
    }
    write_private(path, acct)
    return acct


async def _until_signal(event: trio.Event) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            event.set()
            return


def run(root: Path, host: str, port: int, options: ServerOptions, faults: Faults) -> None:
    root.mkdir(parents=True, exist_ok=True)
    store = Store(root)
    for key in ("client_id", "client_secret", "admin_token"):
        if store.get_meta(key) is None:
            store.set_meta(key, secrets.token_hex(16))
    admin = store.get_meta("admin_token")
    assert admin is not None
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    bound = sock.getsockname()[1]
    url = f"http://{host if ':' not in host else '[' + host + ']'}:{bound}"
    app = DriveApp(store, options, admin, url, faults)
    bootstrap(store, app, root, url)
    cfg = HyperConfig()
    cfg.bind = [f"fd://{sock.fileno()}"]
    cfg.accesslog = None
    cfg.errorlog = log
    cfg.keep_alive_timeout = 75
    cfg.h11_max_incomplete_size = 64 * 1024
    # hypercorn reads a socket 64 KiB at a time (a module constant, no setting): part bodies
    # of 16 MiB then cost 256 trips through h11 and the app each; 1 MiB reads cut the server's
    # CPU per byte, which is what bounds ingest on a small machine (scripts/bench/).
    hypercorn_tcp.MAX_RECV = max(hypercorn_tcp.MAX_RECV, RECV_SIZE)
    print(f"listening on {url}", flush=True)
    sys.stdout.flush()

    async def main() -> None:
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_until_signal, stop)
            await hyper_serve(app, cfg, shutdown_trigger=stop.wait)  # type: ignore[arg-type]
            nursery.cancel_scope.cancel()

    try:
        trio.run(main)
    finally:
        with contextlib.suppress(OSError):  # hypercorn closes the fd it was handed
            sock.close()
        store.db.close()
