"""The app on a real Redis Cluster (three masters, one replica each, from tests/cluster.py):
memory, profiles and the cache work unchanged; a user's keys share one slot; a turn's read is
one round trip to one node; a master killed mid-chat loses no answered turn."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis
from langchain_core.messages import AIMessage, HumanMessage

from stock_agent.app import App
from stock_agent.config import Settings
from stock_agent.store.cluster import parse_cluster_url
from stock_agent.store.turns import TurnNotSaved
from stock_agent.ui.text import format_store_status
from tests.cluster import LocalCluster, cluster  # noqa: F401  (the session fixture)
from tests.conftest import MARKET_DATA
from tests.openai_server import ScriptedOpenAI, text


def cluster_app_settings(local: LocalCluster, home: Path) -> Settings:
    return Settings(
        redis_url=local.url,
        user_id="alice",
        agent_id="test_agent",
        home=home,
        data_dir=MARKET_DATA,
    )


@pytest.fixture
def app(cluster: LocalCluster, short_tmp: Path) -> Iterator[App]:  # noqa: F811
    cluster.flush()
    with App(cluster_app_settings(cluster, short_tmp / "home")) as a:
        yield a


def slot(client: redis.Redis, key: str) -> int:
    return int(client.execute_command("CLUSTER", "KEYSLOT", key))


def all_keys(local: LocalCluster) -> list[str]:
    keys: list[str] = []
    for node in local.masters:
        if node.alive:
            with node.client() as c:
                keys += list(c.scan_iter(count=1000))
    return keys


def test_cluster_url_parses_nodes_credentials_and_tls():
    parsed = parse_cluster_url("rediss+cluster://bob:s%40cret@10.0.0.1:7000,10.0.0.2:7001")
    assert parsed.nodes == (("10.0.0.1", 7000), ("10.0.0.2", 7001))
    assert (parsed.tls, parsed.username, parsed.password) == (True, "bob", "s@cret")
    assert parse_cluster_url("redis+cluster://h:1?password=x").password == "x"


def test_backend_is_a_cluster_with_hash_tagged_keys(app):
    assert app.backend.kind == "cluster"
    assert app.keys.messages("ana", "s1") == "agent:memory:test_agent:{ana}:s1:messages"
    assert type(app.backend.client).__name__ == "RedisCluster"


def test_memory_on_the_cluster(app):
    sessions = app.sessions
    for i in range(3):
        sessions.save_turn("ana", "s1", [HumanMessage(f"q{i}"), AIMessage(f"a{i}", id=f"id{i}")])
    sessions.save_turn("ana", "s2", [HumanMessage("other"), AIMessage("x", id="x")])
    # retried save of the same turn appends nothing
    sessions.save_turn("ana", "s1", [HumanMessage("q2"), AIMessage("a2", id="id2")])

    memory = sessions.read_turn("ana", "s1")
    assert [m.content for m in memory.messages] == ["q0", "a0", "q1", "a1", "q2", "a2"]
    assert [s.session_id for s in sessions.list("ana")] in (["s2", "s1"], ["s1", "s2"])
    assert sessions.clear("ana", "s2")
    assert [s.session_id for s in sessions.list("ana")] == ["s1"]


def test_profile_on_the_cluster(app):
    app.profiles.set_field("ana", "alert_threshold", "-5%")
    app.profiles.add_symbols("ana", ["AAPL", "MSFT"])
    app.profiles.remove_symbols("ana", ["AAPL"])
    profile = app.profiles.get("ana")
    assert profile.preferred_symbols == ("MSFT",) or list(profile.preferred_symbols) == ["MSFT"]
    assert profile.alert_threshold == pytest.approx(-0.05)
    assert app.sessions.read_turn("ana", "s1").profile.alert_threshold == pytest.approx(-0.05)
    assert app.profiles.reset("ana")


def test_cache_on_the_cluster_spreads_over_slots(app):
    calls: list[int] = []

    def fetch(n: int):
        def run():
            calls.append(n)
            return {"n": n}

        return run

    for n in range(40):
        assert app.cache.get_or_fetch("get_quote", {"n": n}, fetch(n), "quote") == ({"n": n}, False)
    for n in range(40):
        assert app.cache.get_or_fetch("get_quote", {"n": n}, fetch(n), "quote") == ({"n": n}, True)
    assert len(calls) == 40
    assert app.cache.entries() == 40
    client = app.backend.client
    cache_keys = [k for k in all_keys(app_cluster(app)) if ":execution_cache:" in k]
    owners = {app_cluster(app).master_of(k).port for k in cache_keys}
    assert len(owners) == 3  # results spread over every master
    index_slots = {slot(client, k) for k in app.keys.cache_indexes()}
    assert len(index_slots) == len(app.keys.cache_indexes())  # no single hot index slot
    assert app.cache.clear() == 40


def app_cluster(app: App) -> LocalCluster:
    return app.__dict__["_test_cluster"]


@pytest.fixture(autouse=True)
def _remember_cluster(request):
    if "app" in request.fixturenames:
        request.getfixturevalue("app").__dict__["_test_cluster"] = request.getfixturevalue(
            "cluster"
        )


def test_a_turn_read_is_one_round_trip_to_one_node(app, cluster):  # noqa: F811
    app.sessions.save_turn("ana", "s1", [HumanMessage("q"), AIMessage("a", id="a1")])
    app.profiles.set_field("ana", "notes", "long term")
    for node in cluster.masters:
        with node.client() as c:
            c.config_resetstat()
    memory = app.sessions.read_turn("ana", "s1")
    assert memory.profile.notes == "long term"
    busy = []
    for node in cluster.masters:
        with node.client() as c:
            stats = c.info("commandstats")
        harness = ("cmdstat_hello", "cmdstat_client|setinfo", "cmdstat_config|resetstat")
        calls = {k: v["calls"] for k, v in stats.items() if k not in harness}
        if calls:
            busy.append(calls)
    assert len(busy) == 1
    assert busy[0] == {
        "cmdstat_lrange": 1, "cmdstat_expire": 3, "cmdstat_zadd": 1, "cmdstat_hgetall": 1
    }  # fmt: skip


def test_status_lists_the_nodes_and_which_answer(app):
    status = app.status()
    assert status.kind == "cluster"
    assert len(status.nodes) == 6
    assert sorted(n.role for n in status.nodes) == ["master"] * 3 + ["replica"] * 3
    assert all(n.answers for n in status.nodes)
    assert sum(n.slots for n in status.nodes) == 16384
    shown = format_store_status(status)
    assert "nodes" in shown and "6 of 6 answer" in shown
    assert status.to_dict()["nodes"][0]["role"] == "master"


def test_a_standalone_store_keeps_plain_keys(settings):
    with App(settings) as a:
        assert a.backend.kind == "standalone"
        assert a.keys.messages("ana", "s1") == "agent:memory:test_agent:ana:s1:messages"


# -- a master dies while chats go on ---------------------------------------------------------


@pytest.fixture
def own_cluster(tmp_path_factory) -> Iterator[LocalCluster]:
    """A cluster of its own: this test kills one of its masters."""
    local = LocalCluster(tmp_path_factory.mktemp("failover")).start()
    yield local
    local.stop()


def echo(body: dict) -> object:
    last = [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
    return text(f"re: {last}")


def test_master_killed_mid_chat_loses_no_answered_turn(own_cluster, short_tmp):
    users = [f"u{i}" for i in range(12)]
    with ScriptedOpenAI() as server:
        server.queue(*([echo] * 2000))
        settings = replace(
            cluster_app_settings(own_cluster, short_tmp / "home"),
            openai_api_key="test-key", openai_base_url=server.base_url, model="test-model",
        )  # fmt: skip
        app = App(settings)
        agent = app.agent()
        answered: dict[str, list[str]] = {u: [] for u in users}
        kept: list[str] = []
        errors: list[BaseException] = []
        stop = threading.Event()

        def chat(user: str) -> None:
            n = 0
            while not stop.is_set():
                question = f"{user} question {n}"
                try:
                    reply = agent.ask(question, user_id=user, session_id="s1")
                    answered[user].append(question)
                    assert reply == f"re: {question}"
                except TurnNotSaved as exc:  # answered, kept by the saver: acknowledged too
                    answered[user].append(question)
                    kept.append(exc.answer)
                except Exception as exc:  # the turn's read failed: never answered, fine
                    errors.append(exc)
                    time.sleep(0.05)
                n += 1

        threads = [threading.Thread(target=chat, args=(u,)) for u in users]
        for t in threads:
            t.start()
        time.sleep(1.0)
        victim = own_cluster.master_of(app.keys.messages(users[0], "s1"))
        victim.kill()
        own_cluster.wait_promoted(victim, timeout=60)
        time.sleep(1.5)  # chats go on against the new master
        stop.set()
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads)
        app.turns.retry()
        assert app.turns.kept == 0
        app.close()

        client = app.backend.client
        for user in users:
            raw = client.lrange(app.keys.messages(user, "s1"), 0, -1)
            humans = [
                json.loads(m)["data"]["content"] for m in reversed(raw)
                if json.loads(m)["type"] == "human"
            ]  # fmt: skip
            window = app.settings.history_window // 2
            # every acknowledged question is stored once, in order (within the window)
            assert humans == answered[user][-len(humans) :]
            assert len(humans) == min(len(answered[user]), len(humans))
            assert len(humans) >= min(len(answered[user]), window - 1)
        # no user's keys split across slots
        for key in all_keys(own_cluster):
            user = app.keys.split(key)
            if user is not None:
                assert slot(client, key) == slot(client, app.keys.sessions(user[0]))
        app.backend.close()
        assert sum(len(a) for a in answered.values()) > len(users)
