"""`analyze --format csv|md`: the computed analyses as flat rows, for spreadsheets and notes.

The columns are the `analyze --json` fields flattened with dots (`returns.1m`); lists are joined
with "; ". Text from data is written without terminal control sequences.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from stock_agent.sanitize import strip_control_line

if TYPE_CHECKING:
    from stock_agent.core.models import Analysis

FORMATS = ("table", "json", "csv", "md")
# What a Markdown table shows: the summary a person reads (the CSV has every field).
MD_COLUMNS = (
    ("symbol", "Symbol"),
    ("as_of", "As of"),
    ("price", "Price"),
    ("returns.1d", "1d"),
    ("returns.1m", "1m"),
    ("returns.1y", "1y"),
    ("indicators.rsi_14", "RSI"),
    ("pct_from_high_52w", "vs 52w high"),
    ("alerts", "Alerts"),
)
_SKIPPED = ("unrounded",)  # the unrounded twins of the rounded numbers: JSON only


def flat_row(analysis: Analysis) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        elif isinstance(value, list):
            out[prefix] = "; ".join(_item_text(v) for v in value)
        else:
            out[prefix] = value

    data = {k: v for k, v in analysis.to_dict().items() if k not in _SKIPPED}
    walk("", data)
    return out


def _item_text(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("text") or value.get("name") or value)
    return str(value)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return strip_control_line(str(value))


def to_csv(analyses: Sequence[Analysis]) -> str:
    rows = [flat_row(a) for a in analyses]
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    return buffer.getvalue()


def to_markdown(analyses: Sequence[Analysis]) -> str:
    lines = [
        "| " + " | ".join(title for _, title in MD_COLUMNS) + " |",
        "|" + "|".join("---" for _ in MD_COLUMNS) + "|",
    ]
    for analysis in analyses:
        row = flat_row(analysis)
        cells = [_cell(row.get(key)).replace("|", "\\|") or "-" for key, _ in MD_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def format_from_path(path: str) -> str | None:
    """The format a file name asks for (`report.csv` -> csv), None when it says nothing."""
    suffix = path.rsplit(".", 1)[-1].lower() if "." in path else ""
    return {"json": "json", "csv": "csv", "md": "md", "markdown": "md"}.get(suffix)
