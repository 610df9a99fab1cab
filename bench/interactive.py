"""7. What a person waits for, as whole processes, in the same run as the reference command
(`profile show`): the chat until its `you>` prompt (in a real pseudo-terminal), Ctrl-D until the
shell returns, and a cached 5-symbol `analyze --json` (time, peak memory, and whether numpy,
pandas or LangChain were imported at all).

The chat's model is the scripted OpenAI-compatible server (tests/openai_server.py): nothing is
asked of it, the prompt only has to appear. Offline market data; REDIS_URL is the bench's Valkey.

Ctrl-C on a dead network (Yahoo as the source, the HTTPS and HTTP proxies a local listener that
accepts and never answers: tests/test_provider_yahoo_network.py), in the pseudo-terminal too:
`analyze AAPL` from Ctrl-C until the process has exited, and a chat turn whose tool is waiting
on that fetch (the scripted model calls `analyze_stocks`) from Ctrl-C until `you>` is back. Ctrl-C
is sent 0.2 s after the listener has accepted the fetch's connection.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from bench.common import MARKET_DATA, Context, Result, Row, Stat, clean_env, met_if
from bench.startup import cli_command

if TYPE_CHECKING:
    import pexpect

    from tests.openai_server import ScriptedOpenAI

GROUP = "7. what a person waits for"
FIVE = ["AAPL", "MSFT", "GOOGL", "NVDA", "TSLA"]
HEAVY = ("numpy", "pandas", "langchain_core", "langchain", "openai", "yfinance")
# Runs the command in-process, then reports its exit code, the heavy modules it imported and
# its peak memory. VmHWM is the high-water mark of this process's own memory since exec:
# ru_maxrss would count the bench process's memory, which a forked child carries until exec.
PROBE = """
import contextlib, io, sys
from stock_agent.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    code = main({argv!r})
hwm = next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(code, hwm, ",".join(m for m in {heavy!r} if m in sys.modules))
"""


def _probe(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, str]:
    """(peak MiB, heavy modules loaded) of one cached analyze, in a process of its own."""
    probe = subprocess.run(
        [sys.executable, "-c", PROBE.format(argv=argv, heavy=HEAVY)],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    code, hwm, loaded = (probe.stdout.strip().rpartition("\n")[-1].split(" ") + [""])[:3]
    if code != "0":
        raise RuntimeError(f"the probe failed: {probe.stderr.strip()[:300]}")
    return int(hwm) / 1024, loaded


def _timed(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, int]:
    """Wall milliseconds and ru_maxrss (KiB; inflated by the parent's size, see PROBE) of one
    whole process."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = (time.perf_counter() - started) * 1000
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        raise RuntimeError(f"`{' '.join(argv)}` exited {proc.returncode}: {err.strip()[:300]}")
    if proc.stderr:
        proc.stderr.close()
    return elapsed, int(usage.ru_maxrss)


def _chat_times(cli: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """(ms until the prompt, ms from Ctrl-D until the process has exited)."""
    import pexpect

    started = time.perf_counter()
    child = pexpect.spawn(
        cli[0], [*cli[1:], "chat", "--new"], env=env, cwd=str(cwd), encoding="utf-8",
        dimensions=(40, 100), timeout=60,
    )  # fmt: skip
    try:
        child.expect_exact("you>")
        prompt_ms = (time.perf_counter() - started) * 1000
        time.sleep(0.2)  # let the prompt settle, as a person would before typing
        left = time.perf_counter()
        child.sendcontrol("d")
        child.expect(pexpect.EOF)
        child.close()
        exit_ms = (time.perf_counter() - left) * 1000
    finally:
        if child.isalive():
            child.terminate(force=True)
    if child.exitstatus != 0:
        raise RuntimeError(f"chat exited {child.exitstatus}")
    return prompt_ms, exit_ms


def _dead_network_env(env: dict[str, str], proxy: str, scratch: Path) -> dict[str, str]:
    """`env` with Yahoo as the source behind `proxy` (a silent listener), a new home and yfinance
    cache, and loopback (the scripted model) reached directly."""
    from tests.test_provider_yahoo_network import online_env

    scratch.mkdir(parents=True, exist_ok=True)
    dead = online_env({**env, "STOCK_AGENT_HOME": str(scratch / "home")}, proxy, scratch)
    dead["NO_PROXY"] = dead["no_proxy"] = "127.0.0.1,localhost"
    return dead


def _ctrl_c_analyze(cli: list[str], env: dict[str, str], scratch: Path) -> tuple[float, int]:
    """(ms from Ctrl-C until the process has exited, its exit code) of `analyze AAPL` waiting on
    a dead network, in a pseudo-terminal."""
    import pexpect

    from tests.test_provider_yahoo_network import SilentListener

    listener = SilentListener()
    child = pexpect.spawn(
        cli[0], [*cli[1:], "analyze", "AAPL"], env=_dead_network_env(env, listener.url, scratch),
        cwd=str(scratch.parent), encoding="utf-8", dimensions=(40, 100), timeout=60,
    )  # fmt: skip
    try:
        if not listener.accepted.wait(60):
            raise RuntimeError("analyze never reached the network")
        time.sleep(0.2)  # the requests are in flight, waiting on the silent proxy
        pressed = time.perf_counter()
        child.sendintr()
        child.expect(pexpect.EOF)
        child.close()
        exit_ms = (time.perf_counter() - pressed) * 1000
    finally:
        if child.isalive():
            child.terminate(force=True)
        listener.close()
    return exit_ms, int(child.exitstatus if child.exitstatus is not None else -1)


def _drain(child: pexpect.spawn, most: float = 1.0) -> None:
    """Read and drop what the child has written so far (for at most `most` seconds)."""
    import pexpect

    until = time.monotonic() + most
    while time.monotonic() < until:
        try:
            child.read_nonblocking(65536, timeout=0.02)
        except pexpect.TIMEOUT:
            break
    child.buffer = ""


def _ctrl_c_chat(
    cli: list[str], env: dict[str, str], scratch: Path, model: ScriptedOpenAI
) -> tuple[float, bool]:
    """(ms from Ctrl-C until `you>` is back, whether the turn said it was stopped) of a chat turn
    whose `analyze_stocks` call waits on a dead network, in a pseudo-terminal."""
    import pexpect

    from tests.openai_server import tool_call
    from tests.test_provider_yahoo_network import SilentListener

    listener = SilentListener()
    model.queue(tool_call("analyze_stocks", {"symbols": ["AAPL"]}))  # no answer: it is stopped
    child = pexpect.spawn(
        cli[0], [*cli[1:], "chat", "--new"], env=_dead_network_env(env, listener.url, scratch),
        cwd=str(scratch.parent), encoding="utf-8", dimensions=(40, 100), timeout=60,
    )  # fmt: skip
    try:
        child.expect_exact("you>")
        time.sleep(0.2)
        child.sendline("how is AAPL?")
        if not listener.accepted.wait(60):
            raise RuntimeError("the chat's tool never reached the network")
        time.sleep(0.2)
        _drain(child)  # the prompt's redraws so far: each has a `you>`
        pressed = time.perf_counter()
        child.sendintr()
        child.expect_exact("you>")
        back_ms = (time.perf_counter() - pressed) * 1000
        stopped = "(stopped" in child.before
        child.sendcontrol("d")
        child.expect(pexpect.EOF)
        child.close()
    finally:
        if child.isalive():
            child.terminate(force=True)
        listener.close()
    if child.exitstatus != 0:
        raise RuntimeError(f"chat exited {child.exitstatus} after the stopped turn")
    if model.unused:
        model.clear()
        raise RuntimeError("the chat never asked the model for its tool call")
    return back_ms, stopped


def run(ctx: Context) -> Result:
    from tests.openai_server import ScriptedOpenAI

    cli, _ = cli_command()
    cwd = ctx.workdir / "interactive-cwd"
    cwd.mkdir(exist_ok=True)
    env = clean_env(
        REDIS_URL=ctx.server.url,
        STOCK_AGENT_HOME=str(ctx.workdir / "interactive-home"),
        STOCK_AGENT_USER="bench",
        STOCK_AGENT_AGENT_ID="bench_interactive",
        STOCK_AGENT_DATA_DIR=str(MARKET_DATA),
        TERM="xterm-256color",
        PROMPT_TOOLKIT_NO_CPR="1",
    )
    repeats = ctx.sizes.startup_repeats
    analyze = [*cli, "analyze", *FIVE, "--json"]
    profile = [*cli, "profile", "show"]
    with ScriptedOpenAI() as server:
        chat_env = {
            **env,
            "OPENAI_BASE_URL": server.base_url,
            "OPENAI_API_KEY": server.api_key or "test-key",
            "STOCK_AGENT_MODEL": "test-model",
        }
        _timed(analyze, env, cwd)  # fills the cache (and warms the bytecode and disk caches)
        _timed(profile, env, cwd)
        _chat_times(cli, chat_env, cwd)
        names = ("profile", "chat", "exit", "analyze", "ctrl_c_analyze", "ctrl_c_chat")
        samples: dict[str, list[float]] = {k: [] for k in names}
        memory: list[float] = []
        interrupted_codes: list[int] = []
        stopped_turns = 0
        for i in range(repeats):
            samples["profile"].append(_timed(profile, env, cwd)[0])
            prompt_ms, exit_ms = _chat_times(cli, chat_env, cwd)
            samples["chat"].append(prompt_ms)
            samples["exit"].append(exit_ms)
            samples["analyze"].append(_timed(analyze, env, cwd)[0])
            mib, loaded = _probe(analyze[len(cli) :], env, cwd)
            memory.append(mib)
            dead = ctx.workdir / f"interactive-dead-{i}"
            ms, code = _ctrl_c_analyze(cli, env, dead / "analyze")
            samples["ctrl_c_analyze"].append(ms)
            interrupted_codes.append(code)
            ms, stopped = _ctrl_c_chat(cli, chat_env, dead / "chat", server)
            samples["ctrl_c_chat"].append(ms)
            stopped_turns += stopped

    stats = {name: Stat.of(values) for name, values in samples.items()}
    reference = stats["profile"]
    mem = Stat.of(memory)
    result = Result("interactive")
    result.rows = [
        Row(GROUP, "stock-agent profile show (the reference)", "ms", reference),
        Row(GROUP, "stock-agent chat until the you> prompt", "ms", stats["chat"], reference,
            "<= 1.5x profile show",
            met_if(stats["chat"], lambda v: v <= 1.5 * reference.median)),
        Row(GROUP, "Ctrl-D until the process has exited", "ms", stats["exit"],
            target="<= 150 ms", met=met_if(stats["exit"], lambda v: v <= 150)),
        Row(GROUP, "cached analyze of 5 symbols --json", "ms", stats["analyze"], reference,
            "<= 1.5x profile show",
            met_if(stats["analyze"], lambda v: v <= 1.5 * reference.median)),
        Row(GROUP, "cached analyze of 5 symbols --json, peak memory", "MiB", mem,
            target="< 45 MiB", met=met_if(mem, lambda v: v < 45)),
        Row(GROUP, "cached analyze: numpy, pandas or LangChain imported", "modules",
            len([m for m in loaded.split(",") if m]), target="0", met=not loaded,
            note=loaded or "none"),
        Row(GROUP, "Ctrl-C until exit: analyze AAPL waiting on a dead network", "ms",
            stats["ctrl_c_analyze"], target="<= 1,000 ms",
            met=met_if(stats["ctrl_c_analyze"], lambda v: v <= 1000),
            note=f"slowest {stats['ctrl_c_analyze'].max:,.0f} ms; exit codes "
                 f"{', '.join(map(str, sorted(set(interrupted_codes))))} (130: interrupted)"),
        Row(GROUP, "Ctrl-C until you> again: a chat turn whose tool waits on a dead network",
            "ms", stats["ctrl_c_chat"], target="<= 1,000 ms",
            met=met_if(stats["ctrl_c_chat"], lambda v: v <= 1000),
            note=f"slowest {stats['ctrl_c_chat'].max:,.0f} ms; {stopped_turns} of {repeats} "
                 "turns said '(stopped; this exchange was not saved)'"),
    ]  # fmt: skip
    result.details = {
        "ms": {name: stat.to_dict() for name, stat in stats.items()},
        "peak_memory_mib": mem.to_dict(),
        "heavy_modules_loaded_by_cached_analyze": loaded.split(",") if loaded else [],
        "ctrl_c_on_a_dead_network": {
            "how": "SIGINT through the pseudo-terminal (Ctrl-C) 0.2 s after the silent "
            "listener (every proxy) accepted the fetch's connection; Yahoo as the source",
            "analyze_exit_codes": interrupted_codes,
            "chat_turns_said_stopped": stopped_turns,
            "chat_turns": repeats,
        },
    }
    return result
