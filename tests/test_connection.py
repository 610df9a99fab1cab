"""The connection: passwords masked wherever a URL is shown, one pooled client per store backend
(owned by an App, no process-wide registry), the production settings on that pool, and an unreachable or misconfigured store reported
in one line that names the (masked) URL and the fix."""

from __future__ import annotations

import pytest

from stock_agent.config import Settings
from stock_agent.errors import StoreUnavailable
from stock_agent.store.backend import StoreBackend
from stock_agent.store.connection import make_client, mask_url, resolve_url
from tests.conftest import free_port


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://user:pw@h:1/0", "redis://user:***@h:1/0"),
        ("rediss://:pw@h", "rediss://:***@h"),
        ("rediss://:s3cr%40t@cache.example.com:6380/2", "rediss://:***@cache.example.com:6380/2"),
        ("redis://default:p@ss:w0rd@h:6379", "redis://default:***@h:6379"),
        ("redis://:pw@[::1]:6379/0", "redis://:***@[::1]:6379/0"),
        ("redis://h:6379/0?password=pw", "redis://h:6379/0?password=***"),
        ("unix:///run/redis.sock?db=1&password=pw", "unix:///run/redis.sock?db=1&password=***"),
        ("unix://:pw@/run/redis.sock", "unix://:***@/run/redis.sock"),
        ("unix:///tmp/sa/valkey.sock", "unix:///tmp/sa/valkey.sock"),
        ("redis://localhost:6379/0", "redis://localhost:6379/0"),
        ("redis://user@localhost:6379/0", "redis://user@localhost:6379/0"),
    ],
)
def test_mask_url_hides_passwords(url, masked):
    assert mask_url(url) == masked


def test_mask_url_never_shows_the_password_text():
    for url in (
        "redis://user:hunter2@h:1/0",
        "rediss://:hunter2@h",
        "redis://h/0?password=hunter2",
        "unix:///s.sock?password=hunter2",
        "redis://u:hunter2@h:notaport/0",
    ):
        assert "hunter2" not in mask_url(url)


def get_client(settings: Settings):
    return StoreBackend(settings).client


def test_a_backend_keeps_one_client_until_closed(settings):
    backend = StoreBackend(settings)
    assert not backend.connected  # nothing connects before first use
    first = backend.client
    assert backend.client is first and first.ping()
    # another backend (another App) has its own pool: nothing is shared through module state
    other = StoreBackend(settings)
    assert other.client is not first
    other.close()
    assert first.ping()
    backend.close()
    assert not backend.connected
    assert backend.client is not first  # reconnects on demand
    backend.close()


def test_the_pool_is_configured_for_production(valkey):
    client = make_client(valkey.url, max_connections=7)
    try:
        pool = client.connection_pool
        kwargs = pool.connection_kwargs
        assert pool.max_connections == 7
        assert kwargs["socket_connect_timeout"] == 5
        assert kwargs["socket_keepalive"] is True
        assert kwargs["health_check_interval"] == 0  # no PING after a pause: retries instead
        assert kwargs["retry_on_timeout"] is True
        assert kwargs["retry"].get_retries() == 3
        assert kwargs["decode_responses"] is True
        assert client.ping()
        assert client.client_getname() == "stock-agent"
    finally:
        client.close()


def test_one_connection_serves_many_commands(valkey, redis_client):
    client = make_client(valkey.url)
    try:
        client.ping()
        before = redis_client.info("stats")["total_connections_received"]
        for i in range(50):
            client.set(f"k{i}", i)
            client.get(f"k{i}")
        assert redis_client.info("stats")["total_connections_received"] == before
    finally:
        client.close()


def test_a_password_and_an_acl_user_in_the_url_work(valkey, redis_client):
    redis_client.acl_setuser(
        "sa_test", enabled=True, passwords=["+s3cret-pw"], keys=["*"], commands=["+@all"]
    )
    try:
        host_port = valkey.url.removeprefix("redis://").split("/")[0]
        settings = Settings(redis_url=f"redis://sa_test:s3cret-pw@{host_port}/0")
        client = get_client(settings)
        assert client.acl_whoami() == "sa_test"

        wrong = Settings(redis_url=f"redis://sa_test:wrong-pw@{host_port}/0")
        with pytest.raises(StoreUnavailable) as info:
            get_client(wrong)
        text = str(info.value)
        assert "wrong-pw" not in text and "s3cret-pw" not in text
        assert f"redis://sa_test:***@{host_port}/0" in text
        assert "password" in info.value.fix
    finally:
        redis_client.acl_deluser("sa_test")


def test_an_unreachable_store_names_the_masked_url_and_the_fix():
    url = f"redis://admin:hunter2@127.0.0.1:{free_port()}/0"  # nothing listens there
    backend = StoreBackend(Settings(redis_url=url))
    with pytest.raises(StoreUnavailable) as info:
        backend.client  # noqa: B018 - the first use connects

    error = info.value
    line = error.one_line()
    assert "\n" not in line
    assert line.startswith("error: cannot reach Redis at redis://admin:***@127.0.0.1:")
    assert "docker compose up -d redis" in line
    assert "unset REDIS_URL" in line
    assert "hunter2" not in line and "hunter2" not in repr(error.args)
    assert error.exit_code != 0
    assert not backend.connected  # a failed client is not kept for the next use


def test_an_unreachable_unix_socket_is_reported_the_same_way(short_tmp):
    sock = short_tmp / "nothing.sock"
    with pytest.raises(StoreUnavailable) as info:
        get_client(Settings(redis_url=f"unix://{sock}?password=hunter2"))
    assert "hunter2" not in str(info.value)
    assert str(sock) in str(info.value)
    assert "docker compose up -d redis" in info.value.fix


@pytest.mark.parametrize(
    "url", ["http://user:hunter2@h:6379", "valkey://h:6379", "localhost:6379", "tcp://h:1"]
)
def test_an_unsupported_scheme_is_refused(url):
    with pytest.raises(StoreUnavailable) as info:
        resolve_url(Settings(redis_url=url))
    assert "unsupported scheme" in info.value.message
    assert "redis://" in info.value.fix and "rediss://" in info.value.fix
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize("url", ["redis://h:6379/0", "rediss://:pw@h:6380", "unix:///tmp/x.sock"])
def test_supported_schemes_resolve_to_themselves(url):
    assert resolve_url(Settings(redis_url=url)) == url


def test_an_app_closes_its_backend(settings):
    from stock_agent.app import App

    with App(settings) as app:
        client = app.backend.client
        assert client.ping()
    assert not app.backend.connected


def test_a_connection_that_died_while_idle_is_retried_not_pinged(short_tmp):
    """The pool keeps no idle health check: after the server restarts under an idle pooled
    connection, the next command fails on the dead socket and the client's retry reconnects."""
    from tests.conftest import ValkeyProcess

    server = ValkeyProcess(short_tmp)
    client = make_client(server.url)
    try:
        assert client.set("k", "before") is True
        server.stop()
        server = ValkeyProcess(short_tmp, port=server.port)  # same address, new process
        assert client.set("k", "after") is True  # one call: the retry reconnected
        assert client.get("k") == "after"
    finally:
        client.close()
        server.stop()
