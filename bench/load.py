"""Many users at once: simulated users, each in a session of their own, chat concurrently
through the async API (`agent.aask`) in one event loop, against a three-master cluster (with
a replica each) and against one standalone server, in the same run.

Measured per store: turns per second, p50/p99 memory latency per turn (the awaited read plus
the awaited save), Redis commands per turn (INFO commandstats deltas on the masters: the save
script's own commands count too, so a turn of 2 round trips, 6 pipelined reads and 1 script
call, shows as about 16) and script calls per turn. Checked
afterwards by reading every key: 0 messages lost or duplicated, every key holds only its own
user's text, and on the cluster every key of a user sits in that user's slot. The capacity
note's figures come from MEMORY USAGE of the keys the run left behind.

The model is the instant in-process one (bench/instrument.py): the figures are the app's and
the store's cost, not a model's. The event-loop stall comes from bench/stall.py (50 users, the
echo model server in its own process), run several times: its median and worst run.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path
from statistics import median
from typing import Any

from bench.common import Context, Result, Row, percentile
from bench.instrument import make_instant_model

GROUP = "10. many users at once (async API)"
AGENT = "bench_load"
# Not a turn's data commands: connection set-up (new pooled connections) and our own INFO.
_NOT_DATA = frozenset(
    ("cmdstat_info", "cmdstat_hello", "cmdstat_client|setinfo", "cmdstat_client|setname",
     "cmdstat_cluster|slots", "cmdstat_cluster|shards", "cmdstat_command", "cmdstat_flushall")
)  # fmt: skip


def _settings(url: str, home: Path) -> Any:
    from stock_agent.config import Settings

    return Settings(redis_url=url, user_id="load", agent_id=AGENT, home=home)


def _masters(url: str) -> list[Any]:
    import redis

    from stock_agent.store.cluster import is_cluster_url, parse_cluster_url

    if is_cluster_url(url):
        nodes = parse_cluster_url(url).nodes
        return [redis.Redis(host=h, port=p, decode_responses=True) for h, p in nodes]
    return [redis.Redis.from_url(url, decode_responses=True)]


def _commands(masters: list[Any]) -> Counter[str]:
    """Calls per command on every master (INFO commandstats), scripts' inner calls included."""
    total: Counter[str] = Counter()
    for client in masters:
        stats = client.info("commandstats")
        total.update({k: int(v["calls"]) for k, v in stats.items() if k not in _NOT_DATA})
    return total


def _question(user: str, turn: int) -> str:
    return f"{user} turn {turn}: how did AAPL and MSFT do this week, and is either overbought?"


async def _drive(app: Any, users: list[str], turns: int) -> tuple[float, list[float], int]:
    from stock_agent.agent.agent import ChatAgent, build_graph

    agent = ChatAgent(
        build_graph(make_instant_model(), []),
        app.sessions,
        saver=app.turns,
        model_name="bench-instant",
    )
    sessions = app.sessions
    latencies: list[float] = []
    read, save = sessions.aread_turn, sessions.asave_turn

    async def timed_read(user_id: str, session_id: str) -> Any:
        start = time.perf_counter()
        try:
            return await read(user_id, session_id)
        finally:
            latencies.append(time.perf_counter() - start)

    async def timed_save(user_id: str, session_id: str, messages: Any) -> None:
        start = time.perf_counter()
        try:
            await save(user_id, session_id, messages)
        finally:
            latencies[-1] += time.perf_counter() - start  # approximate pairing under load

    sessions.aread_turn, sessions.asave_turn = timed_read, timed_save  # type: ignore[method-assign]
    await agent.aask("warm up", user_id="warmup", session_id="w")
    latencies.clear()

    async def user(name: str) -> None:
        for turn in range(turns):
            reply = await agent.aask(_question(name, turn), user_id=name, session_id=f"s-{name}")
            assert name in reply, reply

    start = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(user(u) for u in users)), 600)
    seconds = time.perf_counter() - start
    sessions.aread_turn, sessions.asave_turn = read, save  # type: ignore[method-assign]
    await app.aclose()
    return seconds, latencies, len(users) * turns


def _check(app: Any, users: list[str], turns: int) -> dict[str, int]:
    """Read every key back: lost, duplicated, foreign text, keys outside their user's slot."""
    client, keys = app.backend.client, app.keys
    problems = {"lost": 0, "duplicated": 0, "foreign": 0, "split": 0}
    window = app.settings.history_window // 2
    for name in users:
        raw = client.lrange(keys.messages(name, f"s-{name}"), 0, -1)
        items = [json.loads(item) for item in reversed(raw)]
        humans = [m["data"]["content"] for m in items if m["type"] == "human"]
        expected = [_question(name, t) for t in range(turns)][-len(humans) or len(humans) :]
        kept = min(turns, window)
        problems["lost"] += max(0, kept - len(set(humans)))
        problems["duplicated"] += len(humans) - len(set(humans))
        problems["foreign"] += sum(
            1 for m in items if not str(m["data"]["content"]).startswith(("ok: " + name, name))
        )
        if humans != expected:
            problems["lost"] += 1
    for key in client.scan_iter(match=keys.agent_pattern(), count=1000):
        where = keys.split(key)
        if where is None:
            continue
        if app.backend.cluster:
            slot = client.execute_command("CLUSTER KEYSLOT", key)
            if slot != client.execute_command("CLUSTER KEYSLOT", keys.sessions(where[0])):
                problems["split"] += 1
    return problems


def _capacity(app: Any, users: list[str]) -> dict[str, float]:
    client, keys = app.backend.client, app.keys
    message_bytes = messages = session_bytes = 0
    for name in users:
        key = keys.messages(name, f"s-{name}")
        size = int(client.memory_usage(key, samples=0) or 0)
        count = int(client.llen(key))
        index = int(client.memory_usage(keys.sessions(name), samples=0) or 0)
        usage = int(client.memory_usage(keys.session_usage(name, f"s-{name}"), samples=0) or 0)
        message_bytes += size
        messages += count
        session_bytes += size + index + usage
    per_session = session_bytes / len(users)
    return {
        "bytes_per_message": message_bytes / max(1, messages),
        "bytes_per_session": per_session,
        "messages_per_session": messages / len(users),
        "live_sessions_per_gib": (1 << 30) / per_session,
    }


def _run_store(ctx: Context, label: str, url: str, users: list[str], turns: int) -> dict[str, Any]:
    from stock_agent.app import App

    app = App(_settings(url, ctx.workdir / f"home-{label}"))
    masters = _masters(url)
    for client in masters:
        client.flushall()
    before = _commands(masters)
    seconds, latencies, done = asyncio.run(_drive(app, users, turns))
    commands = _commands(masters)
    commands.subtract(before)
    problems = _check(app, users, turns)
    capacity = _capacity(app, users)
    app.close()
    for client in masters:
        client.close()
    return {
        "turns_per_s": done / seconds,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "commands_per_turn": sum(commands.values()) / max(1, done),
        "scripts_per_turn": commands["cmdstat_evalsha"] / max(1, done),
        "turns": done,
        **problems,
        **capacity,
    }


# Arrivals of the stall runs: all 50 users at the same instant (their turns then go in
# lock-step: the echo server answers all 50 at once), and one user every 2 ms (all 50 within
# 0.1 s, their turns overlapping as with any real traffic).
SPACINGS = {0.0: "at once", 0.002: "arriving 2 ms apart"}


def _stalls(ctx: Context, runs: int) -> dict[float, list[float]]:
    """The worst event-loop stall (ms) of each of `runs` runs of bench/stall.py, per spacing."""
    from bench.stall import worst_stalls
    from tests.openai_server import EchoServerProcess

    settings = _settings(ctx.server.url, ctx.workdir / "home-stall")
    with EchoServerProcess() as model:
        found = worst_stalls(settings, model.base_url, runs, tuple(SPACINGS))
    return {apart: [lag * 1000 for lag in lags] for apart, lags in found.items()}


def run(ctx: Context) -> Result:
    from tests.cluster import LocalCluster

    count, turns = (20, 3) if ctx.sizes.quick else (200, 5)
    users = [f"user{i:03d}" for i in range(count)]
    local = LocalCluster(ctx.workdir / "cluster").start()
    try:
        figures = {
            "cluster (3 masters + 3 replicas)": _run_store(ctx, "cluster", local.url, users, turns),
            "standalone": _run_store(ctx, "standalone", ctx.server.url, users, turns),
        }
    finally:
        local.stop()
    stalls = _stalls(ctx, 2 if ctx.sizes.quick else 5)
    result = Result(
        "load",
        details={
            "users": count,
            "turns_per_user": turns,
            **figures,
            "stalls_ms": {SPACINGS[a]: lags for a, lags in stalls.items()},
        },
    )
    for apart, lags in stalls.items():
        for label, value in (("median", median(lags)), ("worst", max(lags))):
            result.rows.append(
                Row(
                    GROUP,
                    f"event loop: worst stall, {label} of {len(lags)} runs (50 users "
                    f"{SPACINGS[apart]}, 2 turns each; model server in its own process)",
                    "ms",
                    round(value, 1),
                    target="<= 50",
                    met=value <= 50,
                )
            )
    for store, f in figures.items():
        rows = [
            ("turns per second", "turns/s", round(f["turns_per_s"], 1), None),
            ("memory latency per turn p50", "ms", round(f["p50_ms"], 2), None),
            ("memory latency per turn p99", "ms", round(f["p99_ms"], 2), None),
            (
                "Redis commands per turn, the save script's own included",
                "commands",
                round(f["commands_per_turn"], 2),
                None,
            ),
            ("save script calls per turn", "calls", round(f["scripts_per_turn"], 2), None),
            ("messages lost", "messages", f["lost"], "0"),
            ("messages duplicated", "messages", f["duplicated"], "0"),
            ("entries of another user", "entries", f["foreign"], "0"),
            ("keys outside their user's slot", "keys", f["split"], "0"),
            ("bytes per message (MEMORY USAGE)", "bytes", round(f["bytes_per_message"]), None),
            ("bytes per live session", "bytes", round(f["bytes_per_session"]), None),
            ("live sessions per GiB", "sessions", round(f["live_sessions_per_gib"]), None),
        ]
        for metric, unit, value, target in rows:
            result.rows.append(
                Row(
                    GROUP,
                    f"{store}: {metric} ({count} users x {turns} turns)",
                    unit,
                    value,
                    target=target,
                    met=None if target is None else value == 0,
                )  # fmt: skip
            )
    return result
