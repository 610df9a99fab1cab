"""Faults on the embedded store, with real processes: a paused server (SIGSTOP), one that cannot
persist (-MISCONF), one loading its data (-LOADING), a server whose socket was deleted, a stuck
start-up lock, leftovers of a dead server. In every case one server at most runs on the data
folder (counted from /proc): an unwell server is reported with a fix, never replaced."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stock_agent.errors import StoreUnavailable
from stock_agent.store import embedded
from tests.conftest import REPO
from tests.test_embedded_store import client_for, servers_for, stop_all, wait_gone

# Deadlock guards only: no test asserts how long anything took.
pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def home(short_tmp: Path) -> Iterator[Path]:
    """STOCK_AGENT_HOME for one test; whatever serves it is stopped afterwards."""
    path = short_tmp / "home"
    try:
        yield path
    finally:
        stop_all(path)


def wait_until(condition, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def start(home: Path) -> tuple[str, int]:
    url = embedded.ensure_running(home)
    [pid] = servers_for(home)
    assert embedded.read_pid(home) == pid
    return url, pid


# --------------------------------------------------------------------------- paused


def test_a_paused_server_is_reported_not_replaced(home):
    url, pid = start(home)
    os.kill(pid, signal.SIGSTOP)
    try:
        with pytest.raises(StoreUnavailable) as info:
            embedded.ensure_running(home, probe_timeout=0.3)
        assert info.value.message == (
            f"the embedded store (pid {pid}) does not answer: it may be paused or overloaded"
        )
        assert "store stop" in info.value.fix
        assert servers_for(home) == [pid]  # no second server on the same files
        found = embedded.status(home, probe_timeout=0.3)
        assert (found.state, found.pid) == ("unwell", pid)
        assert embedded.is_running(home)
    finally:
        os.kill(pid, signal.SIGCONT)

    assert embedded.ensure_running(home) == url  # works again, the same server
    assert servers_for(home) == [pid]
    client = client_for(url)
    try:
        assert client.ping()
    finally:
        client.close()


def test_stop_reaches_a_paused_server_and_it_saves(home):
    url, pid = start(home)
    client = client_for(url)
    client.set("k", "kept")
    client.close()
    os.kill(pid, signal.SIGSTOP)

    assert embedded.stop(home) is True  # SIGTERM, then SIGCONT so that it handles it

    assert wait_gone(pid)
    assert servers_for(home) == []
    url, _ = start(home)
    client = client_for(url)
    try:
        assert client.get("k") == "kept"
    finally:
        client.close()


# --------------------------------------------------------------------------- cannot persist


def make_snapshots_fail(home: Path, client) -> None:
    """MISCONF without root or a full disk: a directory where the snapshot file goes makes the
    final rename of every RDB save fail (EISDIR, even for root), and with save points set the
    server then refuses writes and PING with -MISCONF (stop-writes-on-bgsave-error)."""
    (home / "dump.rdb").unlink(missing_ok=True)
    (home / "dump.rdb").mkdir()
    client.bgsave()
    wait_until(
        lambda: client.info("persistence")["rdb_last_bgsave_status"] == "err",
        what="the snapshot to fail",
    )


def test_a_server_that_cannot_persist_is_reported_not_replaced(home):
    url, pid = start(home)
    client = client_for(url)
    try:
        client.set("before", "1")
        make_snapshots_fail(home, client)

        with pytest.raises(StoreUnavailable) as info:
            embedded.ensure_running(home)
        message = info.value.message
        assert message.startswith(
            f"the embedded store (pid {pid}) cannot write: it cannot persist its data to disk "
            f"under {home.resolve()} (MISCONF "
        )
        assert "free disk space" in info.value.fix
        assert servers_for(home) == [pid]
        found = embedded.status(home)
        assert (found.state, found.pid, found.detail) == ("unwell", pid, message)

        (home / "dump.rdb").rmdir()  # the cause removed, the next snapshot works
        client.bgsave()
        wait_until(
            lambda: client.info("persistence")["rdb_last_bgsave_status"] == "ok",
            what="the snapshot to work",
        )
        assert embedded.ensure_running(home) == url
        assert servers_for(home) == [pid]
        assert client.get("before") == "1"
    finally:
        client.close()


def test_stop_reaches_a_server_that_cannot_save_its_snapshot_and_loses_nothing(home):
    """Every write is in the append-only file, so a stop without the final snapshot loses
    nothing; the next start loads the append-only file."""
    url, pid = start(home)
    client = client_for(url)
    client.set("before", "1")
    make_snapshots_fail(home, client)
    client.close()

    assert embedded.stop(home) is True

    assert wait_gone(pid)
    assert servers_for(home) == []
    (home / "dump.rdb").rmdir()
    url, _ = start(home)
    client = client_for(url)
    try:
        assert client.get("before") == "1"
    finally:
        client.close()


@pytest.fixture
def small_disk(short_tmp: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs (needs the right to mount: root here; skipped elsewhere)."""
    mount = short_tmp / "disk"
    mount.mkdir()
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
            capture_output=True,
            text=True,
        )
    except OSError as exc:  # no mount command
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        stop_all(mount / "home")
        if subprocess.run(["umount", str(mount)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(disk: Path) -> Path:
    filler = disk / "filler"
    with open(filler, "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError:
            pass
    return filler


def test_a_full_disk_is_reported_and_stop_refuses_to_lose_data(small_disk: Path):
    import redis

    home = small_disk / "home"
    url, pid = start(home)
    client = client_for(url)
    try:
        client.set("before", "kept")
        filler = fill(small_disk)

        def refused() -> bool:
            try:
                client.set("big", "x" * 200_000)
            except redis.ResponseError as exc:
                return str(exc).startswith("MISCONF")
            return False

        wait_until(refused, what="the server to refuse writes")

        with pytest.raises(StoreUnavailable) as info:
            embedded.ensure_running(home)
        assert info.value.message.startswith(
            f"the embedded store (pid {pid}) cannot write: disk full under {home.resolve()} "
            "(MISCONF Errors writing to the AOF file: No space left on device"
        )
        assert servers_for(home) == [pid]

        # It cannot save, so it would lose writes: stop says so and kills nothing.
        with pytest.raises(StoreUnavailable) as info:
            embedded.stop(home, timeout=5)
        assert info.value.message.startswith(f"the embedded store (pid {pid}) refuses to stop")
        assert "free disk space" in info.value.fix
        assert servers_for(home) == [pid]

        filler.unlink()  # space again: the server retries its writes on its own
        wait_until(lambda: embedded.status(home).state == "running", what="the server to recover")
        assert embedded.ensure_running(home) == url
        assert servers_for(home) == [pid]
    finally:
        client.close()
    assert embedded.stop(home) is True
    assert servers_for(home) == []
    url, _ = start(home)
    client = client_for(url)
    try:
        assert client.get("before") == "kept"
    finally:
        client.close()


# --------------------------------------------------------------------------- loading

# A stand-in for a server loading a large append-only file: it answers -LOADING to anything.
# Like the real server it runs as `valkey-server ... --unixsocket <path>` (argv[0] set so) and
# writes its pid file.
FAKE_LOADING = textwrap.dedent(
    """
    import os, socket, sys, threading
    path, pidfile = sys.argv[2], sys.argv[3]
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(16)
    with open(pidfile, "w") as handle:
        handle.write(f"{os.getpid()}\\n")
    print("ready", flush=True)

    def serve(conn):
        with conn:
            while conn.recv(4096):
                conn.sendall(b"-LOADING Valkey is loading the dataset in memory\\r\\n")

    while True:
        conn, _ = server.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()
    """
)


def test_a_loading_server_is_reported_not_replaced(home):
    home.mkdir(mode=0o700)
    sock = embedded.socket_path(home.resolve())
    fake = subprocess.Popen(
        ["valkey-server", "-c", FAKE_LOADING, "--unixsocket", str(sock), str(home / "valkey.pid")],
        executable=sys.executable,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert fake.stdout.readline().strip() == "ready"
        with pytest.raises(StoreUnavailable) as info:
            embedded.ensure_running(home)
        assert info.value.message == (
            f"the embedded store (pid {fake.pid}) is loading its data, try again in a moment"
        )
        assert servers_for(home) == [fake.pid]  # the fake only: no real server was started
        found = embedded.status(home)
        assert (found.state, found.pid) == ("unwell", fake.pid)

        assert embedded.stop(home) is True  # SHUTDOWN is answered -LOADING: SIGTERM reaches it
        assert fake.wait(timeout=30) == -signal.SIGTERM
    finally:
        if fake.poll() is None:
            fake.kill()
            fake.wait()

    # It died leaving its socket and pid file: both are stale now, so a real server starts.
    assert sock.exists()
    start(home)


# --------------------------------------------------------------------------- leftovers


def test_a_server_whose_socket_was_deleted_is_found_by_its_process(home):
    """What the old liveness check left behind: a server running with its socket and pid file
    gone. It is found from its command line, reported, and `stop` still reaches it."""
    _, pid = start(home)
    embedded.socket_path(home).unlink()
    (home / "valkey.pid").unlink()

    with pytest.raises(StoreUnavailable) as info:
        embedded.ensure_running(home, timeout=1)
    assert info.value.message == (
        f"the embedded store (pid {pid}) runs but its socket "
        f"{embedded.socket_path(home.resolve())} is gone"
    )
    assert f"kill {pid}" in info.value.fix
    assert servers_for(home) == [pid]
    assert embedded.status(home).pid == pid

    assert embedded.stop(home) is True
    assert wait_gone(pid)
    assert servers_for(home) == []
    start(home)


def test_a_stale_socket_and_a_reused_pid_do_not_block_a_start(home):
    """After a crash the socket file stays and the pid in the pid file may now belong to an
    unrelated process: neither is mistaken for a server, and the unrelated process is left alone."""
    home.mkdir(mode=0o700)
    leftover = embedded.socket_path(home.resolve())
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(leftover))  # a socket file that nothing listens on
    other = subprocess.Popen(["sleep", "120"])
    try:
        (home / "valkey.pid").write_text(f"{other.pid}\n")
        assert embedded.status(home).state == "stopped"

        _, pid = start(home)

        assert pid != other.pid
        assert other.poll() is None  # untouched
    finally:
        other.kill()
        other.wait()


# --------------------------------------------------------------------------- the start-up lock

HOLD_LOCK = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    sys.path.insert(0, {repo!r})
    from stock_agent.store import embedded

    with embedded._start_lock(Path(sys.argv[1]), 5):  # a starter that got stuck
        print("held", flush=True)
        time.sleep(120)
    """
)


def test_a_stuck_start_lock_is_reported_naming_its_holder(home):
    home.mkdir(mode=0o700)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK.format(repo=str(REPO)), str(home)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreUnavailable) as info:
            embedded.ensure_running(home, lock_timeout=0.5)
        assert info.value.message.startswith(
            f"the embedded store is being started by pid {holder.pid}"
        )
        assert f"kill {holder.pid}" in info.value.fix
        assert servers_for(home) == []
    finally:
        holder.kill()
        holder.wait()
    start(home)  # the lock died with its holder


def test_a_lock_held_by_a_process_that_wrote_no_pid_is_reported_too(home):
    home.mkdir(mode=0o700)
    script = (
        "import fcntl, sys, time\n"
        "handle = open(sys.argv[1], 'a')\n"
        "fcntl.flock(handle, fcntl.LOCK_EX)\n"
        "print('held', flush=True)\n"
        "time.sleep(120)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", script, str(home / "store.lock")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreUnavailable) as info:
            embedded.ensure_running(home, lock_timeout=0.3)
        assert info.value.message.startswith("another process has held the embedded store's")
        assert servers_for(home) == []
    finally:
        holder.kill()
        holder.wait()
