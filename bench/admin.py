"""8. Admin commands on a crowded server: `cache stats`, `cache clear` and `store status` as whole
processes, on a database holding only this agent's data and then on the same with N unrelated
keys (full: 1,000,000; quick: 20,000). Measured: the commands the server ran for the command
(INFO stats, minus the measuring call itself) and the wall time. They read the cache's index
shards and INFO, never the keyspace, so both should stay as on the empty database.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from bench.common import MARKET_DATA, Context, Result, Row, clean_env
from bench.startup import cli_command

GROUP = "9. admin commands with many unrelated keys"
DB = 5  # a database of its own on the bench's server
COMMANDS = {
    "cache stats": ["cache", "stats"],
    "store status": ["store", "status"],
    "cache clear": ["cache", "clear"],
}


def _processed(client: object) -> int:
    return int(client.info("stats")["total_commands_processed"])  # type: ignore[attr-defined]


def _measure(
    cli: list[str], env: dict[str, str], cwd: Path, client: object
) -> dict[str, tuple[int, float]]:
    """Per admin command: (server commands, wall ms); the cache is filled before each."""
    out: dict[str, tuple[int, float]] = {}
    for name, args in COMMANDS.items():
        subprocess.run([*cli, "analyze", "AAPL", "MSFT", "--json"], env=env, cwd=cwd,
                       capture_output=True, timeout=120, check=True)  # fmt: skip
        before = _processed(client)
        started = time.perf_counter()
        done = subprocess.run([*cli, *args], env=env, cwd=cwd, capture_output=True, timeout=120)
        elapsed = (time.perf_counter() - started) * 1000
        if done.returncode != 0:
            raise RuntimeError(f"{name} exited {done.returncode}: {done.stderr[:300]!r}")
        out[name] = (_processed(client) - before - 1, elapsed)
    return out


def run(ctx: Context) -> Result:
    import redis

    unrelated = 20_000 if ctx.sizes.quick else 1_000_000
    url = ctx.server.url.rsplit("/", 1)[0] + f"/{DB}"
    client = redis.Redis.from_url(url, decode_responses=True)
    cli, _ = cli_command()
    cwd = ctx.workdir / "admin-cwd"
    cwd.mkdir(exist_ok=True)
    env = clean_env(
        REDIS_URL=url,
        STOCK_AGENT_HOME=str(ctx.workdir / "admin-home"),
        STOCK_AGENT_USER="bench",
        STOCK_AGENT_AGENT_ID="bench_admin",
        STOCK_AGENT_DATA_DIR=str(MARKET_DATA),
    )
    try:
        client.flushdb()
        empty = _measure(cli, env, cwd, client)
        pipe = client.pipeline(transaction=False)
        for i in range(unrelated):
            pipe.set(f"unrelated:{i}", "x")
            if i % 10_000 == 9_999:
                pipe.execute()
        pipe.execute()
        crowded = _measure(cli, env, cwd, client)
    finally:
        client.flushdb()
        client.close()

    result = Result("admin")
    for name in COMMANDS:
        (c0, t0), (c1, t1) = empty[name], crowded[name]
        within = c1 <= max(c0 * 1.1, c0 + 1)
        result.rows.append(
            Row(GROUP, f"{name}: server commands, {unrelated:,} unrelated keys (baseline: empty)",
                "", c1, c0, "within 10% of empty", within)
        )  # fmt: skip
        result.rows.append(
            Row(GROUP, f"{name}: wall time, {unrelated:,} unrelated keys (baseline: empty)", "ms",
                round(t1, 1), round(t0, 1))
        )  # fmt: skip
    result.details = {"unrelated_keys": unrelated, "empty": empty, "crowded": crowded}
    return result
