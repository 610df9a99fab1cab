"""1. The memory cost of one chat turn, model excluded.

Each sample is one real turn (`ask`) with an in-process model that answers instantly, on the
project and on the baseline alternately (the order flips every sample). Around each turn:
client-side round trips and connects (bench.instrument), server-side commands and connections
accepted (INFO deltas), the time spent in the history (factory + load + save), in Redis I/O,
and the whole turn. Both sides start a new session every `turns_per_session` turns, so history
length is the same for both and small (growth is measured separately).
"""

from __future__ import annotations

from typing import Any

from bench.common import Context, Result, Row, Stat, met_if
from bench.instrument import WireCounter, history_timing, make_instant_model, timed_factory
from bench.sides import USER, build_sides

GROUP = "1. chat turn, memory only"
QUESTION = "How are AAPL and MSFT doing this week, and is either one overbought? ({n})"


def _turn(
    ctx: Context, counter: WireCounter, agent: Any, session_id: str, n: int
) -> dict[str, Any]:
    import time

    before = ctx.counters.snapshot()
    with counter.measure() as wire:
        started = time.perf_counter()
        agent.ask(QUESTION.format(n=n), user_id=USER, session_id=session_id)
        elapsed = time.perf_counter() - started
    server = ctx.counters.delta(before, ctx.counters.snapshot())
    return {
        "round_trips": wire.round_trips,
        "client_commands": wire.commands,
        "error_replies": server.pop("error_replies", 0),
        "client_connects": wire.connects,
        "server_connections": server.pop("connections", 0),
        "commands": server.pop("commands", 0),
        "by_command": server,
        "history_ms": wire.history_seconds * 1000,
        "redis_io_ms": wire.io_seconds * 1000,
        "turn_ms": elapsed * 1000,
    }


def _commands_per_turn(samples: list[dict[str, Any]]) -> dict[str, float]:
    totals: dict[str, int] = {}
    for sample in samples:
        for name, calls in sample["by_command"].items():
            totals[name] = totals.get(name, 0) + calls
    return {name: round(calls / len(samples), 3) for name, calls in sorted(totals.items())}


def _expire_health_checks(client: Any) -> int:
    """Make the pool's idle connections due for their health check, as after 30 s of silence."""
    pool = client.connection_pool
    connections = list(getattr(pool, "_available_connections", []))
    for connection in connections:
        connection.next_health_check = 0
    return len(connections)


def run(ctx: Context) -> Result:
    from langchain_community.chat_message_histories import RedisChatMessageHistory

    from stock_agent.store.history import SessionHistory

    sizes = ctx.sizes
    counter = WireCounter()
    result = Result("turn_cost")
    ctx.counters.client.script_flush()  # the project's first turn finds no script loaded

    with counter.installed(), history_timing(counter, [SessionHistory, RedisChatMessageHistory]):
        sides = build_sides(
            ctx.server.url, make_instant_model(), wrap_factory=lambda f: timed_factory(counter, f)
        )
        # the project's first turn, on a pool that has never connected
        first = _turn(ctx, counter, sides.project, "tc-first", 0)
        # the baseline's first turn pays one-time imports; not a sample
        _turn(ctx, counter, sides.baseline, "tc-warm", 0)

        samples: dict[str, list[dict[str, Any]]] = {"project": [], "baseline": []}
        for i in range(sizes.turn_samples):
            session = f"tc-{i // sizes.turns_per_session}"
            order = ("baseline", "project") if i % 2 == 0 else ("project", "baseline")
            for side in order:
                agent = sides.project if side == "project" else sides.baseline
                samples[side].append(_turn(ctx, counter, agent, session, i))

        idle: list[dict[str, Any]] = []
        simulated = True
        for i in range(max(3, sizes.turn_samples // 10)):
            simulated = _expire_health_checks(sides.client) > 0 and simulated
            idle.append(_turn(ctx, counter, sides.project, "tc-idle", i))
        sides.client.close()

    def stat(side: str, name: str) -> Stat:
        return Stat.of([s[name] for s in samples[side]])

    p_rt, b_rt = stat("project", "round_trips"), stat("baseline", "round_trips")
    p_conn, b_conn = stat("project", "server_connections"), stat("baseline", "server_connections")
    idle_rt = Stat.of([s["round_trips"] for s in idle])
    result.rows = [
        Row(GROUP, "Redis round trips per turn (client)", "", p_rt, b_rt, "<= 2",
            p_rt.max <= 2, "every steady turn" if p_rt.max <= 2 else f"max {p_rt.max:g}"),
        Row(GROUP, "Redis commands sent per turn (client)", "", stat("project", "client_commands"),
            stat("baseline", "client_commands")),
        Row(GROUP, "commands run per turn (server, incl. inside Lua)", "",
            stat("project", "commands"), stat("baseline", "commands")),
        Row(GROUP, "new connections per turn after the first (server)", "", p_conn, b_conn, "0",
            p_conn.max == 0),
        Row(GROUP, "first turn on a cold pool: round trips", "", first["round_trips"], b_rt,
            note=f"{first['server_connections']} new connection; script loaded once"),
        Row(GROUP, "turn after >30 s idle: round trips", "", idle_rt, b_rt,
            "<= 2", met_if(idle_rt, lambda v: v <= 2) if simulated else None,
            ("health-check PING (health_check_interval=30)" if idle_rt.median > 2 else "")
            if simulated else "could not simulate: redis-py's pool internals changed"),
        Row(GROUP, "time in history per turn (factory+load+save)", "ms",
            stat("project", "history_ms"), stat("baseline", "history_ms")),
        Row(GROUP, "time in Redis I/O per turn", "ms", stat("project", "redis_io_ms"),
            stat("baseline", "redis_io_ms")),
        Row(GROUP, "whole turn, instant model", "ms", stat("project", "turn_ms"),
            stat("baseline", "turn_ms")),
    ]  # fmt: skip
    result.details = {
        "model": "in-process instant chat model (bench.instrument.make_instant_model)",
        "samples_per_side": sizes.turn_samples,
        "turns_per_session": sizes.turns_per_session,
        "error_replies_per_turn": {
            "project": Stat.of([s["error_replies"] for s in samples["project"]]).to_dict(),
            "baseline": Stat.of([s["error_replies"] for s in samples["baseline"]]).to_dict(),
        },
        "commands_per_turn": {
            "project": _commands_per_turn(samples["project"]),
            "baseline": _commands_per_turn(samples["baseline"]),
        },
        "client_connects_per_turn": {
            "project": Stat.of([s["client_connects"] for s in samples["project"]]).to_dict(),
            "baseline": Stat.of([s["client_connects"] for s in samples["baseline"]]).to_dict(),
        },
        "first_project_turn": first,
        "idle_project_turn_commands": _commands_per_turn(idle),
        "connected_clients_after": ctx.counters.info("clients").get("connected_clients"),
    }
    return result
