"""`stock-agent store migrate`: standalone -> cluster and standalone -> standalone copy profiles,
sessions (in order, with their TTL), their usage, the sessions index, the usage by day and
alert markers; key names change
form; a second run changes nothing; `--user` copies one user; the agent resumes on the target."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from langchain_core.messages import AIMessage, HumanMessage

from stock_agent.app import App
from stock_agent.cli import main
from stock_agent.config import Settings
from stock_agent.store.backend import StoreBackend
from stock_agent.store.keys import KeySpace
from stock_agent.store.migrate import migrate
from tests.cluster import LocalCluster, cluster  # noqa: F401  (the session fixture)
from tests.conftest import MARKET_DATA, ValkeyProcess

AGENT = "test_agent"
USERS = ("alice", "bob", "carol")


def make_settings(url: str, home: Path) -> Settings:
    return Settings(redis_url=url, user_id="alice", agent_id=AGENT, home=home, data_dir=MARKET_DATA)


@pytest.fixture(scope="module")
def second_valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyProcess]:
    server = ValkeyProcess(tmp_path_factory.mktemp("valkey-target"))
    yield server
    server.stop()


USED = {"input_tokens": 10, "output_tokens": 2, "total_tokens": 12}


def seed(app: App) -> None:
    """Three users: profiles, two sessions each (the first with counted usage, so a usage
    hash for it and one for the day), one alert marker; plus a cache entry."""
    for n, user in enumerate(USERS):
        app.profiles.client.hset(
            app.keys.profile(user), mapping={"notes": "long term", "currency": "EUR"}
        )
        for s in ("s1", "s2"):
            for i in range(3):
                answer = AIMessage(f"a{i}", id=f"{user}-{s}-{i}")
                if s == "s1":
                    answer.usage_metadata = USED  # type: ignore[assignment]
                    answer.response_metadata = {"model_name": "m", "cost_usd": 0.25}
                app.sessions.save_turn(user, f"{s}-{n}", [HumanMessage(f"{user} {s} q{i}"), answer])
        app.backend.client.set(app.keys.alert_fired(user, "AAPL", "2026-11-20"), "fired", ex=3600)
    app.backend.client.set(app.keys.cache("quote", {"symbol": "AAPL"}), "{}", ex=600)


def user_state(client: Any, keys: KeySpace, user: str) -> dict[str, Any]:
    """Everything migrate copies for `user`, with TTLs in seconds."""
    state: dict[str, Any] = {"profile": client.hgetall(keys.profile(user))}
    index = keys.sessions(user)
    sessions = client.zrange(index, 0, -1, withscores=True)
    state["index"] = sessions
    state["index_ttl"] = client.ttl(index)
    for sid, _ in sessions:
        key = keys.messages(user, sid)
        state[sid] = (client.lrange(key, 0, -1), client.ttl(key))
    alert = keys.alert_fired(user, "AAPL", "2026-11-20")
    state["alert"] = (client.get(alert), client.ttl(alert))
    for sid, _ in sessions:
        key = keys.session_usage(user, sid)
        state[f"{sid} usage"] = (client.hgetall(key), client.ttl(key))
    day = keys.usage_day(user, time.strftime("%Y-%m-%d"))
    state["day"] = (client.hgetall(day), client.ttl(day))
    return state


def assert_same(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        va, vb = a[name], b[name]
        if name == "index_ttl":
            assert abs(va - vb) <= 3, name
        elif isinstance(va, tuple):
            assert va[0] == vb[0], name
            assert abs(va[1] - vb[1]) <= 3, name  # TTL kept, within a few seconds
        else:
            assert va == vb, name


def cluster_keys(local: LocalCluster) -> list[str]:
    found: list[str] = []
    for node in local.masters:
        with node.client() as c:
            found += list(c.scan_iter(count=1000))
    return found


@pytest.fixture
def source(settings: Settings) -> Iterator[App]:
    with App(settings) as app:
        seed(app)
        yield app


def test_standalone_to_cluster(
    source: App,
    cluster: LocalCluster,  # noqa: F811
    short_tmp: Path,
) -> None:
    cluster.flush()
    target_settings = make_settings(cluster.url, short_tmp / "target-home")
    target = StoreBackend(target_settings)
    try:
        start = time.monotonic()
        report = migrate(source.backend, target, None)
        elapsed = time.monotonic() - start
        # 3 users x (profile + 2 sessions + index + alert marker + a session's usage + the day)
        assert [u.user_id for u in report.users] == list(USERS)
        assert report.keys == 21 and report.sessions == 6 and report.profiles == 3
        print(f"\nstandalone -> cluster: {report.keys} keys in {elapsed:.3f} s")

        keys_on_cluster = cluster_keys(cluster)
        assert not any("execution_cache" in k for k in keys_on_cluster)  # never the cache
        assert all("{" in k for k in keys_on_cluster)  # the hash-tag form only
        client = target.client
        for user in USERS:
            mine = [k for k in keys_on_cluster if f"{{{user}}}" in k]
            assert len(mine) == 7
            slots = {int(client.execute_command("CLUSTER", "KEYSLOT", k)) for k in mine}
            assert len(slots) == 1, user  # every key of a user in one slot
            assert_same(
                user_state(source.backend.client, source.keys, user),
                user_state(client, target.keys, user),
            )
        first = {u: user_state(client, target.keys, u) for u in USERS}
        again = migrate(source.backend, target, None)
        assert again.keys == report.keys
        assert sorted(cluster_keys(cluster)) == sorted(keys_on_cluster)
        for user in USERS:
            assert_same(first[user], user_state(client, target.keys, user))
    finally:
        target.close()

    # the agent on the target store resumes a migrated session
    with App(target_settings) as app:
        assert app.backend.kind == "cluster"
        listed = [s.session_id for s in app.sessions.list("alice")]
        assert sorted(listed) == ["s1-0", "s2-0"]
        memory = app.sessions.read_turn("alice", "s1-0")
        assert [m.content for m in memory.messages] == [
            c for i in range(3) for c in (f"alice s1 q{i}", f"a{i}")
        ]
        assert (memory.profile.notes, memory.profile.currency) == ("long term", "EUR")


def test_standalone_to_standalone_and_one_user(
    source: App, second_valkey: ValkeyProcess, short_tmp: Path
) -> None:
    dest = redis.Redis.from_url(second_valkey.url, decode_responses=True)
    dest.flushall()
    target_settings = make_settings(second_valkey.url, short_tmp / "target-home")
    target = StoreBackend(target_settings)
    try:
        report = migrate(source.backend, target, "bob")
        assert [u.user_id for u in report.users] == ["bob"]
        assert report.keys == 7
        assert all(":bob:" in k for k in dest.scan_iter())  # --user: only that user
        report = migrate(source.backend, target, None)
        assert report.keys == 21
        before = sorted(dest.scan_iter())
        assert not any("execution_cache" in k for k in before)
        for user in USERS:
            assert_same(
                user_state(source.backend.client, source.keys, user),
                user_state(dest, target.keys, user),
            )
        migrate(source.backend, target, None)
        assert sorted(dest.scan_iter()) == before
    finally:
        target.close()
        dest.close()
    with App(target_settings) as app:
        memory = app.sessions.read_turn("carol", "s2-2")
        assert [m.content for m in memory.messages][:2] == ["carol s2 q0", "a0"]
        assert len(memory.messages) == 6


def test_cli_migrate(
    cli_env: dict[str, str],
    settings: Settings,
    second_valkey: ValkeyProcess,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with App(settings) as app:
        seed(app)
    dest = redis.Redis.from_url(second_valkey.url, decode_responses=True)
    dest.flushall()
    url = second_valkey.url.replace("redis://", "redis://default:s3cret@")
    assert (
        main(["store", "migrate", "--to", second_valkey.url, "--user", "alice"], env=cli_env) == 0
    )
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (
        "alice: 1 profile, 2 sessions, 1 sessions index, 1 alert marker, 2 usage records copied"
    )
    assert out[-1].startswith("migrated 1 user, 7 keys from ")
    assert len(list(dest.scan_iter())) == 7
    assert main(["store", "migrate", "--to", cli_env["REDIS_URL"]], env=cli_env) != 0
    assert "is the current store" in capsys.readouterr().err
    # a password in the URL (the default user is `nopass`: any password is accepted) is
    # never printed
    assert main(["store", "migrate", "--to", url], env=cli_env) == 0
    captured = capsys.readouterr()
    assert "migrated 3 users, 21 keys" in captured.out
    assert "s3cret" not in captured.out + captured.err
    dest.close()


def test_cluster_to_standalone(
    cluster: LocalCluster,  # noqa: F811
    second_valkey: ValkeyProcess,
    short_tmp: Path,
) -> None:
    """Back from the cluster: SCAN covers every master, the hash tags are dropped."""
    cluster.flush()
    dest = redis.Redis.from_url(second_valkey.url, decode_responses=True)
    dest.flushall()
    with App(make_settings(cluster.url, short_tmp / "source-home")) as app:
        seed(app)
        target = StoreBackend(make_settings(second_valkey.url, short_tmp / "target-home"))
        try:
            report = migrate(app.backend, target, None)
            assert report.keys == 21
            assert not any("{" in k for k in dest.scan_iter())
            for user in USERS:
                assert_same(
                    user_state(app.backend.client, app.keys, user),
                    user_state(dest, target.keys, user),
                )
        finally:
            target.close()
            dest.close()
