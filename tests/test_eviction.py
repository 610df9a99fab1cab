"""Eviction cannot take profiles silently: real servers with a small maxmemory, 40 profiles, then
a fill past the limit. Under `allkeys-lru` profiles are evicted and `doctor` and `store status`
warn; under `volatile-lru` (what the embedded store and docker-compose use) all 40 survive;
under `noeviction` a refused write names the limit and the fix, and reads still work."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from stock_agent.store import connection
from stock_agent.store.errors import StoreFull
from stock_agent.store.history import SessionHistory
from stock_agent.store.keys import KeySpace
from stock_agent.store.profile import ProfileStore
from stock_agent.store.sessions import SessionStore
from tests.conftest import REPO, ValkeyProcess
from tests.test_cli import doctor_lines, ok, one_error_line, run

KEYS = KeySpace("test_agent")
USERS = [f"user{i:02d}" for i in range(40)]
HEADROOM = 2 * 1024 * 1024  # maxmemory = memory used by the 40 profiles + 2 MiB
FILL = 8000  # 1 KiB values with a TTL (like cached results and sessions): 8 MiB, 4x the room


@pytest.fixture
def server(short_tmp: Path) -> Iterator[ValkeyProcess]:
    """A server of this test's own (the shared one must keep its memory limit off)."""
    valkey = ValkeyProcess(short_tmp)
    yield valkey
    valkey.stop()


def fill_past_maxmemory(url: str, policy: str) -> tuple[Any, int]:
    """40 profiles, then maxmemory just above them and `FILL` keys with a TTL under `policy`.
    Returns the client and how many of the fill's writes were refused (OOM)."""
    client = connection.make_client(url)
    profiles = ProfileStore(client, KEYS)
    for user in USERS:
        profiles.add_symbols(user, ["AAPL", "MSFT"])
        profiles.set_field(user, "portfolio_size", "250k")
    used = client.info("memory")["used_memory"]
    client.config_set("maxmemory-policy", policy)
    client.config_set("maxmemory", used + HEADROOM)
    refused = 0
    pipe = client.pipeline(transaction=False)
    for i in range(FILL):
        pipe.set(f"{KEYS.root}:execution_cache:fill:{i}", "v" * 1024, ex=3600)
        if i % 200 == 199:
            refused += sum(isinstance(r, Exception) for r in pipe.execute(raise_on_error=False))
    return client, refused


def surviving(client: Any) -> int:
    return sum(
        1
        for user in USERS
        if ProfileStore(client, KEYS).get(user).preferred_symbols == ["AAPL", "MSFT"]
    )


def env_for(cli_env: dict[str, str], server: ValkeyProcess) -> dict[str, str]:
    return {**cli_env, "REDIS_URL": server.url, "STOCK_AGENT_USER": USERS[0]}


def status_rows(out: str) -> list[tuple[str, str]]:
    return [tuple(re.split(r"\s{2,}", line, maxsplit=1)) for line in out.splitlines()]  # type: ignore[misc]


def test_allkeys_lru_evicts_profiles_and_doctor_and_store_status_warn(server, cli_env):
    client, refused = fill_past_maxmemory(server.url, "allkeys-lru")
    try:
        alive = surviving(client)
    finally:
        client.close()
    print(f"allkeys-lru: {alive}/40 profiles survived the fill")  # the README's figure
    assert refused == 0 and alive < 40

    env = env_for(cli_env, server)
    status = ok(run(env, "store", "status"))
    rows = status_rows(status)
    [eviction] = [v for k, v in rows if k == "eviction"]
    assert eviction.startswith("maxmemory-policy allkeys-lru, maxmemory ")
    assert ("warning", "profiles can be evicted: set maxmemory-policy volatile-lru") in rows
    as_json = json.loads(ok(run(env, "store", "status", "--json")))
    assert as_json["maxmemory_policy"] == "allkeys-lru" and as_json["evicts_profiles"] is True
    assert as_json["maxmemory"] > 0
    assert "profiles can be evicted: set maxmemory-policy volatile-lru" in as_json["warnings"]

    # A warning, not a failure: everything works now; the fix is the server's setting.
    state, text = doctor_lines(ok(run(env, "doctor")))["eviction"]
    assert state == "warn"
    assert text.startswith("maxmemory-policy allkeys-lru, maxmemory ")
    assert "profiles can be evicted: set maxmemory-policy volatile-lru" in text


def test_volatile_lru_keeps_every_profile_under_the_same_fill(server, cli_env):
    client, refused = fill_past_maxmemory(server.url, "volatile-lru")
    try:
        alive = surviving(client)
        evicted = client.info("stats")["evicted_keys"]
    finally:
        client.close()
    print(f"volatile-lru: {alive}/40 profiles survived, {evicted} keys with a TTL evicted")
    assert refused == 0 and evicted > 0  # the fill really went past maxmemory
    assert alive == 40

    env = env_for(cli_env, server)
    _, text = doctor_lines(ok(run(env, "doctor")))["eviction"]
    assert text.startswith("maxmemory-policy volatile-lru, maxmemory ")
    assert "profiles can be evicted" not in text


def test_noeviction_full_refuses_writes_naming_the_limit_and_the_fix_but_reads_work(
    server, cli_env
):
    user = USERS[0]
    client = connection.make_client(server.url)
    SessionHistory(client, KEYS, user, "s1", ttl=600, window=20).add_messages(
        [HumanMessage("q"), AIMessage("a")]
    )
    client.close()
    client, refused = fill_past_maxmemory(server.url, "noeviction")
    try:
        assert refused > 0 and surviving(client) == 40
        # Closing the fill's connection frees its buffers, which can bring used memory back
        # under the limit: pin the limit below what the data alone uses, so it stays full.
        client.config_set("maxmemory", client.info("memory")["used_memory"] - 512 * 1024)
        limit = client.info("memory")["maxmemory_human"]
        # Reading a turn refreshes TTLs (refused under OOM): the read works all the same.
        memory = SessionStore(client, KEYS, ttl=600, window=20).read_turn(user, "s1")
        assert [m.content for m in memory.messages] == ["q", "a"]
        assert memory.profile.portfolio_size == 250_000
        with pytest.raises(StoreFull):
            ProfileStore(client, KEYS).set_field(user, "notes", "x")
    finally:
        client.close()

    env = env_for(cli_env, server)
    line = one_error_line(run(env, "profile", "set", "notes", "long-term"), 3)
    assert line.startswith(
        f"error: Redis is out of memory: used memory is over maxmemory {limit} and "
        "maxmemory-policy noeviction refuses writes (raise maxmemory"
    )
    assert "stock-agent cache clear" in line and "volatile-lru" in line
    assert "cannot reach" not in line
    shown = json.loads(ok(run(env, "profile", "show", "--json")))  # reads still work
    assert shown["portfolio_size"] == 250_000

    # Nothing can be saved: doctor fails, naming the limit, and still checks what it can read.
    doctor = run(env, "doctor")
    assert doctor.returncode == 1
    rows = doctor_lines(doctor.stdout)
    state, text = rows["eviction"]
    assert state == "warn" and "under noeviction writes are refused once it is full" in text
    state, text = rows["access"]
    assert (
        state == "FAIL" and f"Redis is out of memory: used memory is over maxmemory {limit}" in text
    )
    assert rows["keys"][0] == "ok"


def test_the_embedded_store_and_docker_compose_keep_volatile_lru(cli_env, short_tmp):
    compose = (REPO / "docker-compose.yml").read_text()
    assert re.search(r"--maxmemory-policy\s*\n\s*- volatile-lru", compose), compose

    env = {k: v for k, v in cli_env.items() if k != "REDIS_URL"}
    env["STOCK_AGENT_HOME"] = str(short_tmp / "emb")
    try:
        # `store status` never starts a stopped server: a command that needs the store does
        ok(run(env, "profile", "show"))
        status = json.loads(ok(run(env, "store", "status", "--json")))
        assert status["kind"] == "embedded"
        assert status["maxmemory_policy"] == "volatile-lru"
        assert status["evicts_profiles"] is False and status["warnings"] == []
    finally:
        run(env, "store", "stop")
