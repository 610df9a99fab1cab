"""Redis ACLs, with real ACL users on the test server: a narrow user (no INFO, no CONFIG) still
gets `store status` and `doctor`; a user on the wrong keys, a read-only user and a user without
scripts are told the store is NOT usable, with the command or key pattern to grant; no message
relayed from Redis ever carries the password."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from stock_agent.store import connection
from stock_agent.store.errors import PermissionDenied, classify, relay
from tests.test_cli import doctor_lines, ok, one_error_line, run

PASSWORD = "Acl-pw-7Hq2xZ-secret"
AGENT_KEYS = "agent:memory:test_agent:*"


@pytest.fixture
def acl_user(valkey: Any, redis_client: Any, cli_env: dict[str, str]) -> Iterator[Any]:
    """`acl_user(name, *rules)` creates a Redis user and returns an env that logs in as it;
    every user made is deleted afterwards."""
    made: list[str] = []
    host_port = valkey.url.removeprefix("redis://").split("/")[0]

    def make(name: str, *rules: str) -> dict[str, str]:
        redis_client.execute_command("ACL", "SETUSER", name, "reset", "on", f">{PASSWORD}", *rules)
        made.append(name)
        return {**cli_env, "REDIS_URL": f"redis://{name}:{PASSWORD}@{host_port}/0"}

    yield make
    for name in made:
        redis_client.acl_deluser(name)


def no_secret(*results: Any) -> None:
    for result in results:
        assert PASSWORD not in result.stdout + result.stderr
        assert "NoPermissionError" not in result.stdout + result.stderr
        assert "Traceback" not in result.stderr


def test_a_user_without_info_and_config_still_gets_status_and_doctor(acl_user, redis_client):
    env = acl_user("narrow", f"~{AGENT_KEYS}", "+@all", "-info", "-config")
    ok(run(env, "profile", "add-symbol", "AAPL"))

    status = run(env, "store", "status", "--scan")
    rows = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in ok(status).splitlines())
    assert rows["store"] == "external (unknown server (INFO not permitted))"
    assert rows["eviction"] == "unknown (CONFIG not permitted)"
    assert rows["not permitted"] == "INFO, CONFIG (ACL of this Redis user)"
    assert "1 profiles" in rows["keys (test_agent)"]  # SCAN is still permitted
    as_json = json.loads(ok(run(env, "store", "status", "--json")))
    assert as_json["not_permitted"] == ["INFO", "CONFIG"]
    assert as_json["maxmemory_policy"] is None and as_json["total_keys"] is None

    doctor = run(env, "doctor")
    rows = doctor_lines(ok(doctor))
    assert rows["store"][0] == "ok" and "INFO, CONFIG not permitted (ACL)" in rows["store"][1]
    assert rows["eviction"] == (
        "warn",
        "unknown (CONFIG not permitted): cannot tell whether profiles can be evicted",
    )
    assert rows["access"] == (
        "ok",
        "Redis user 'narrow' may read, write and run scripts on agent:memory:test_agent:alice:*",
    )
    no_secret(status, doctor)


def test_a_user_on_the_wrong_keys_is_told_the_store_is_not_usable(acl_user, redis_client):
    env = acl_user("elsewhere", "~other:*", "+@all")

    doctor = run(env, "doctor")
    assert doctor.returncode == 1, doctor.stdout
    rows = doctor_lines(doctor.stdout)
    assert rows["store"][0] == "ok"  # the server answers: only the keys are refused
    assert rows["access"] == (
        "FAIL",
        "Redis user 'elsewhere' may not write, read, run scripts on "
        "agent:memory:test_agent:alice:* (ACL): the store is not usable for alice (grant "
        "`ACL SETUSER elsewhere ~agent:memory:test_agent:* +@read +@write +@keyspace "
        "+@scripting`, or use a Redis user that may)",
    )

    # Every command says which key and what to grant, never "cannot reach Redis".
    profile = run(env, "profile", "show")
    assert one_error_line(profile, 3) == (
        "error: Redis user 'elsewhere' may not access agent:memory:test_agent:alice:profile "
        "(ACL) (grant the key pattern (`ACL SETUSER elsewhere ~agent:memory:test_agent:*`), "
        "or use a Redis user that may)"
    )
    sessions = run(env, "sessions", "list")
    assert "may not access agent:memory:test_agent:alice:sessions (ACL)" in one_error_line(
        sessions, 3
    )
    setting = run(env, "profile", "set", "notes", "x")
    assert "may not access agent:memory:test_agent:alice:profile (ACL)" in one_error_line(
        setting, 3
    )
    stats = run(env, "cache", "stats")
    assert "(ACL)" in one_error_line(stats, 3)
    for result in (profile, sessions, setting, stats):
        assert "cannot reach" not in result.stderr
    no_secret(doctor, profile, sessions, setting, stats)
    assert redis_client.keys("*") == []  # nothing was written, the probe included


@pytest.mark.parametrize(
    ("rules", "denied"),
    [
        ((f"%R~{AGENT_KEYS}", "+@all"), "write, run scripts on"),
        ((f"~{AGENT_KEYS}", "+@all", "-@scripting"), "run scripts on"),
    ],
)
def test_a_read_only_or_script_less_user_cannot_save_turns_and_doctor_says_so(
    acl_user, rules, denied
):
    env = acl_user("partial", *rules)
    doctor = run(env, "doctor")
    assert doctor.returncode == 1
    state, text = doctor_lines(doctor.stdout)["access"]
    assert state == "FAIL"
    assert text.startswith(f"Redis user 'partial' may not {denied} agent:memory:test_agent:alice:*")
    no_secret(doctor)


def test_a_user_denied_the_cache_keys_gets_a_warning_only(acl_user):
    env = acl_user("nocache", "~agent:memory:test_agent:alice:*", "+@all")
    rows = doctor_lines(ok(run(env, "doctor")))
    state, text = rows["access"]
    assert state == "warn" and "the cache is not usable" in text and "tools fetch" in text


def test_a_user_who_may_not_name_its_connection_is_told_what_to_grant(acl_user):
    env = acl_user("nosetname", f"~{AGENT_KEYS}", "+@all", "-client")
    result = run(env, "profile", "show")
    assert one_error_line(result, 3) == (
        "error: Redis user 'nosetname' may not run CLIENT SETNAME (ACL) (grant it "
        "(`ACL SETUSER nosetname +client|setname`), or use a Redis user that may)"
    )
    no_secret(result)


def test_text_relayed_from_redis_never_carries_the_password(acl_user, valkey):
    env = acl_user("echo", "~*", "+@all")
    client = connection.make_client(env["REDIS_URL"])
    try:
        # The server echoes what it was sent: an unknown command named like the password.
        with pytest.raises(Exception) as info:
            client.execute_command(f"x-{PASSWORD}", PASSWORD)
        assert PASSWORD in str(info.value)  # the raw reply does carry it
        assert PASSWORD not in relay(info.value, client)
        assert "***" in relay(info.value, client)

        with pytest.raises(Exception) as denied:
            client.execute_command("ACL", "SETUSER", "echo", "-@all")  # now denied everything
            client.get("k")
        typed = classify(denied.value, client=client, key="k")
        assert isinstance(typed, PermissionDenied)
        assert PASSWORD not in str(typed)
    finally:
        client.close()
