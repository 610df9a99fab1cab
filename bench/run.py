"""`python -m bench [--quick] [--out FILE] [--only NAMES]`: start a Valkey server for the run,
run every benchmark (project and baseline alternately), print the table, write the JSON.

Exit code: 0 when every benchmark ran (missed targets are printed, not failed), 1 when one of
them could not run (a harness failure), 2 on bad arguments, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from bench.common import REPO, BenchServer, Context, Result, ServerCounters, Sizes
from bench.report import (
    cell,
    load_average,
    machine_info,
    misses,
    table,
    update_readme,
    write_json,
)

# (name, module, what it measures), in the order they run and are printed
BENCHMARKS = (
    ("turn_cost", "bench.turn_cost", "memory cost of one chat turn"),
    ("growth", "bench.growth", "growth with conversation length"),
    ("cache", "bench.execution_cache", "execution cache hits, misses, single flight"),
    ("startup", "bench.startup", "start-up of whole processes"),
    ("tokens", "bench.tokens", "what a narrated analysis sends to the model"),
    ("throughput", "bench.throughput", "chat turns per second, concurrent sessions"),
    (
        "interactive",
        "bench.interactive",
        "what a person waits for: chat prompt, exit, cached analyze",
    ),
    ("requests", "bench.requests", "Yahoo requests per analyze, cold and warm"),
    ("admin", "bench.admin", "admin commands with many unrelated keys"),
    ("load", "bench.load", "many users at once through the async API: cluster and one server"),
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmarks of stock-agent against the seed-style baseline (see bench/README.md).",
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes for CI: finishes in seconds"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON file to write (default: bench/results/latest.json, or quick.json with --quick)",
    )
    parser.add_argument(
        "--only",
        default="",
        metavar="NAMES",
        help=f"comma-separated subset of: {', '.join(name for name, _, _ in BENCHMARKS)}",
    )
    parser.add_argument(
        "--update-readme",
        action="store_true",
        help="put this run's table and machine into bench/README.md (section 'Latest full run')",
    )
    args = parser.parse_args(argv)
    known = {name for name, _, _ in BENCHMARKS}
    args.selected = [n.strip() for n in args.only.split(",") if n.strip()] or sorted(known)
    unknown = set(args.selected) - known
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    if args.out is None:
        args.out = REPO / "bench" / "results" / ("quick.json" if args.quick else "latest.json")
    return args


class BenchmarkTimeout(Exception):
    pass


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through the `finally` that stops the server


def _time_limit(signum: int, frame: Any) -> None:
    raise BenchmarkTimeout("the benchmark ran past its time limit")


def run_one(name: str, module_name: str, ctx: Context) -> Result:
    started = time.perf_counter()
    limit = 180 if ctx.sizes.quick else 1200
    if hasattr(signal, "SIGALRM"):
        signal.signal(signal.SIGALRM, _time_limit)
        signal.alarm(limit)
    try:
        module = importlib.import_module(module_name)
        result: Result = module.run(ctx)
    except Exception as exc:  # a harness failure: report it, run the others
        detail = traceback.format_exc()
        ctx.log(f"  FAILED: {type(exc).__name__}: {exc}")
        print(detail, file=sys.stderr)
        result = Result(name, error=f"{type(exc).__name__}: {exc}")
        result.details["traceback"] = detail
    finally:
        if hasattr(signal, "SIGALRM"):
            signal.alarm(0)
    result.seconds = time.perf_counter() - started
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = Sizes.for_mode(args.quick)
    signal.signal(signal.SIGTERM, _terminate)
    workdir = Path(tempfile.mkdtemp(prefix="sa-bench-", dir="/tmp"))  # short: unix socket paths
    server = BenchServer(workdir / "valkey")
    results: list[Result] = []
    info: dict[str, Any] = {}
    started = time.perf_counter()

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    try:
        server.start()
        counters = ServerCounters(server.url)
        info = machine_info(counters.info("server"))
        mode = "quick" if args.quick else "full"
        log(f"bench ({mode}): Valkey {info['valkey']} on {server.url}, {info['cpu']}")
        ctx = Context(sizes, server, counters, workdir, log)
        for name, module_name, what in BENCHMARKS:
            if name not in args.selected:
                continue
            log(f"- {name}: {what}")
            counters.client.flushall()
            result = run_one(name, module_name, ctx)
            log(f"  {result.seconds:.1f} s")
            results.append(result)
        counters.close()
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    rendered = table(results)
    print()
    print(rendered)
    missed = misses(results)
    failed = [r for r in results if r.error]
    print()
    if missed:
        print("Targets missed:")
        for row in missed:
            note = f" ({row.note})" if row.note else ""
            print(
                f"  - {row.group} / {row.metric}: {cell(row.project)} vs target {row.target}{note}"
            )
    else:
        print("Every target with a value was met.")
    for result in failed:
        print(f"HARNESS FAILURE in {result.name}: {result.error}")

    info["load_average_at_end"] = load_average()
    payload = {
        "mode": "quick" if args.quick else "full",
        "machine": info,
        "sizes": sizes.__dict__,
        "seconds": round(time.perf_counter() - started, 2),
        "rows": [row.to_dict() for result in results for row in result.rows],
        "benchmarks": {
            r.name: {"seconds": round(r.seconds, 2), "error": r.error, "details": r.details}
            for r in results
        },
        "targets_missed": [f"{row.group} / {row.metric}" for row in missed],
    }
    write_json(args.out, payload)
    print(f"\nwrote {args.out} ({payload['seconds']:.0f} s)")
    if args.update_readme:
        readme = REPO / "bench" / "README.md"
        update_readme(readme, rendered, info, payload["mode"], args.out)
        print(f"updated {readme}")
    return 1 if failed else 0
