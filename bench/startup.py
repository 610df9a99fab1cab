"""4. Start-up, as whole processes (wall time from spawn to exit), repeated, the commands
interleaved in each round. Every command runs once as a warm-up first (bytecode and disk
caches), and must exit 0. Quick mode runs the full-stack import once, without a warm-up.

- `stock-agent --help`
- `stock-agent profile show` against the bench's Valkey (REDIS_URL)
- `stock-agent profile show` with the embedded store (no REDIS_URL), its server already running
- baseline: `python -c "import langchain.agents, langchain_openai, yfinance, pandas"`, what a
  command pays when it imports the whole stack at start
- floor: `python -c pass`, the interpreter alone
`stock-agent` is the console script next to the running interpreter when there is one, else
`python -m stock_agent` (the JSON says which).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.common import Context, Result, Row, Stat, clean_env, met_if

GROUP = "4. start-up (whole process)"
FULL_STACK = "import langchain.agents, langchain_openai, yfinance, pandas"


def cli_command() -> tuple[list[str], str]:
    script = Path(sys.executable).parent / "stock-agent"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)], f"console script {script}"
    return [sys.executable, "-m", "stock_agent"], f"{sys.executable} -m stock_agent"


def timed_run(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
    elapsed = (time.perf_counter() - started) * 1000
    if done.returncode != 0:
        raise RuntimeError(
            f"`{' '.join(argv)}` exited {done.returncode}: {(done.stderr or done.stdout).strip()[:300]}"
        )
    return elapsed


def run(ctx: Context) -> Result:
    cli, cli_how = cli_command()
    cwd = ctx.workdir / "startup-cwd"  # no .env here: the runs see only the environment below
    cwd.mkdir(exist_ok=True)
    home = ctx.workdir / "home"
    base = {"STOCK_AGENT_USER": "bench", "STOCK_AGENT_AGENT_ID": "bench_startup"}
    external = clean_env(REDIS_URL=ctx.server.url, STOCK_AGENT_HOME=str(home), **base)
    embedded = clean_env(STOCK_AGENT_HOME=str(home), **base)
    commands = {
        "help": (cli + ["--help"], external),
        "profile_redis_url": (cli + ["profile", "show"], external),
        "profile_embedded": (cli + ["profile", "show"], embedded),
        "full_stack_import": ([sys.executable, "-c", FULL_STACK], external),
        "python_floor": ([sys.executable, "-c", "pass"], external),
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    try:
        started = time.perf_counter()
        timed_run(*commands["profile_embedded"], cwd)  # starts the embedded server
        embedded_start_ms = (time.perf_counter() - started) * 1000
        # quick mode runs the (seconds-long) full-stack import once, without a warm-up
        slow = {"full_stack_import"} if ctx.sizes.quick else set()
        for name, (argv, env) in commands.items():
            if name not in slow:
                timed_run(argv, env, cwd)
        names = list(commands)
        for round_ in range(ctx.sizes.startup_repeats):
            shift = round_ % len(names)
            for name in names[shift:] + names[:shift]:
                if name in slow and times[name]:
                    continue
                argv, env = commands[name]
                times[name].append(timed_run(argv, env, cwd))
    finally:
        _stop_embedded(home)

    stats = {name: Stat.of(values) for name, values in times.items()}
    stack = stats["full_stack_import"]
    result = Result("startup")
    result.rows = [
        Row(GROUP, "stock-agent --help", "ms", stats["help"], stack, "< 150 ms",
            met_if(stats["help"], lambda v: v < 150)),
        Row(GROUP, "stock-agent profile show (REDIS_URL)", "ms", stats["profile_redis_url"],
            stack, "< 300 ms", met_if(stats["profile_redis_url"], lambda v: v < 300)),
        Row(GROUP, "stock-agent profile show (embedded store)", "ms", stats["profile_embedded"],
            stack, "< 300 ms", met_if(stats["profile_embedded"], lambda v: v < 300),
            "server already running"),
        Row(GROUP, "python -c pass (interpreter floor)", "ms", stats["python_floor"], stack),
    ]  # fmt: skip
    result.details = {
        "cli": cli_how,
        "baseline": f'{sys.executable} -c "{FULL_STACK}"',
        "first_embedded_call_ms": round(embedded_start_ms, 1),
        "ms": {name: stat.to_dict() for name, stat in stats.items()},
    }
    return result


def _stop_embedded(home: Path) -> None:
    """Stop the embedded server the runs started, whatever state it is in."""
    if not home.exists():
        return
    try:
        from stock_agent.store import embedded

        embedded.stop(home, timeout=5)
        pid = embedded.read_pid(home)
    except Exception:
        pid = None
    if pid:
        try:
            os.kill(pid, 0)
        except OSError:
            return
        try:  # only if the pid still is that server (the pid may have been reused)
            cmdline = Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
        except OSError:
            return
        if str(home) in cmdline or str(home.resolve()) in cmdline:  # its socket path
            os.kill(pid, signal.SIGKILL)
