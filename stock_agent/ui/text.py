"""Plain-text renderers for the light commands (no rich import: they must start fast).
Text that came from data, a model or a profile is printed without terminal control sequences."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from stock_agent.core.limits import DEFAULT_CURRENCY
from stock_agent.sanitize import strip_control, strip_control_line

if TYPE_CHECKING:
    import datetime as dt

    from stock_agent.config import CacheTTLs
    from stock_agent.core.models import Profile
    from stock_agent.core.usage import DayUsage
    from stock_agent.store.sessions import SessionInfo
    from stock_agent.store.status import StoreStatus


def _rows(rows: list[tuple[str, str]], indent: str = "  ") -> str:
    width = max((len(k) for k, _ in rows), default=0)
    return "\n".join(f"{indent}{k.ljust(width)}  {v}" for k, v in rows)


def format_profile(user_id: str, profile: Profile) -> str:
    threshold = (
        f"{profile.alert_threshold * 100:.2f}%  (alert on a 1-day drop of {abs(profile.alert_threshold) * 100:g}% or more)"
        if profile.alert_threshold is not None
        else "not set"
    )
    rows = [
        ("preferred_symbols", ", ".join(profile.preferred_symbols) or "none"),
        ("alert_threshold", threshold),
        (
            "portfolio_size",
            f"{profile.portfolio_size:,.2f} {profile.currency or DEFAULT_CURRENCY}"
            if profile.portfolio_size
            else "not set",
        ),
        ("notes", strip_control_line(profile.notes) if profile.notes else "none"),
    ]
    if profile.updated_at:
        rows.append(
            ("updated", time.strftime("%Y-%m-%d %H:%M", time.localtime(profile.updated_at)))
        )
    return f"Profile of {user_id}\n{_rows(rows)}"


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s ago"
    if seconds < 3600:
        return f"{seconds // 60}m ago"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m ago"


def format_sessions(user_id: str, sessions: list[SessionInfo]) -> str:
    if not sessions:
        return f"No live sessions for {user_id}. Start one with `stock-agent chat`."
    now = time.time()
    header = ("SESSION", "MESSAGES", "LAST ACTIVITY", "EXPIRES IN", "TOKENS IN/OUT", "COST")
    rows = [
        (
            s.session_id,
            str(s.messages),
            _ago(now - s.last_activity),
            f"{max(s.ttl, 0) // 60}m{max(s.ttl, 0) % 60:02d}s",
            f"{s.usage.tokens_in:,}/{s.usage.tokens_out:,}" if s.usage else "-",
            s.usage.cost_text if s.usage else "-",
        )
        for s in sessions
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [header, *rows]
    ]
    return f"Sessions of {user_id}, newest first\n" + "\n".join(lines)


_ROLE = {"human": "you", "ai": "agent", "system": "system", "tool": "tool"}


def format_messages(messages: list[dict[str, Any]]) -> str:
    out = []
    for m in messages:
        role = _ROLE.get(str(m.get("type")), str(m.get("type")))
        content = m.get("data", {}).get("content", "")
        if isinstance(content, list):  # content blocks
            content = " ".join(
                str(b.get("text", "")) if isinstance(b, dict) else str(b) for b in content
            )
        out.append(f"{role}> {strip_control(str(content))}")
    return "\n\n".join(out)


def format_cache_stats(stats: dict[str, dict[str, Any]], entries: int, ttls: CacheTTLs) -> str:
    lines = [f"Cached results: {entries}"]
    if stats:
        header = ("TOOL", "LOOKUPS", "HITS", "MISSES", "HIT RATE")
        rows = [
            (
                tool,
                str(s["lookups"]),
                str(s["hits"]),
                str(s["misses"]),
                f"{s['hit_rate'] * 100:.0f}%",
            )
            for tool, s in sorted(stats.items())
        ]
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(5)]
        lines += [
            "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            for r in [header, *rows]
        ]
    else:
        lines.append("No lookups yet.")
    lines.append(
        f"TTLs: quote {ttls.quote}s, bars/analysis {ttls.bars}s, fundamentals {ttls.fundamentals}s, news {ttls.news}s"
    )
    return "\n".join(lines)


def plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def format_store_status(status: StoreStatus) -> str:
    keys = status.keys
    rows = [
        ("store", f"{status.kind} ({status.server})"),
        ("url", status.url),
    ]
    if status.nodes:
        rows.append(("nodes", format_nodes(status)))
    if status.home:
        rows.append(("data dir", status.home))
    rows += [
        ("memory used", str(status.used_memory) if status.used_memory else "unknown"),
        ("eviction", format_eviction(status)),
        ("append-only", "on" if status.append_only else "off"),
        (
            f"keys ({status.agent_id})",
            f"{keys['messages']} sessions' messages, {keys['sessions']} session indexes, "
            f"{keys['profile']} profiles, {plural(keys['cache'], 'cache entry', 'cache entries')}"
            if keys
            else (
                plural(status.cache_entries, "cache entry", "cache entries")
                + " (`--scan` counts the other keys)"
                if status.cache_entries is not None
                else "unknown (not permitted)"
            ),
        ),
        ("keys (all)", str(status.total_keys) if status.total_keys is not None else "unknown"),
    ]
    pending = status.journal_pending
    rows.append(
        (
            "journal",
            f"{pending} answered turn{'s' if pending != 1 else ''} waiting "
            "(the next chat, sessions, profile or analyze command saves them)"
            if pending
            else "no unsaved turns",
        )
    )
    if status.not_permitted:
        denied = ", ".join(status.not_permitted)
        rows.append(("not permitted", f"{denied} (ACL of this Redis user)"))
    rows += [("warning", text) for text in status.warnings]
    return _rows(rows, indent="")


def format_nodes(status: StoreStatus) -> str:
    """A cluster's nodes: `127.0.0.1:7000 master 5461 slots ok, 127.0.0.1:7003 replica of
    127.0.0.1:7000 ok, ...`, with `DOWN` for a node that does not answer."""
    parts = []
    for n in status.nodes:
        what = f"{n.slots} slots" if n.role == "master" else f"of {n.master or '?'}"
        parts.append(f"{n.address} {n.role} {what} {'ok' if n.answers else 'DOWN'}")
    answering = sum(n.answers for n in status.nodes)
    return f"{answering} of {len(status.nodes)} answer: " + ", ".join(parts)


def format_eviction(status: StoreStatus) -> str:
    """`maxmemory-policy volatile-lru, maxmemory 64.00M`, or why it is unknown."""
    from stock_agent.store.status import human_bytes

    if status.maxmemory_policy is None:
        return "unknown (CONFIG not permitted)"
    if status.maxmemory is None:
        limit = "unknown"
    elif status.maxmemory == 0:
        limit = "0 (no limit)"
    else:
        limit = human_bytes(status.maxmemory)
    return f"maxmemory-policy {status.maxmemory_policy}, maxmemory {limit}"


def message_usage(message: dict[str, Any]) -> dict[str, Any] | None:
    """The usage a stored answer carries (`sessions show --json`), or None."""
    data = message.get("data") or {}
    usage = data.get("usage_metadata") if isinstance(data, dict) else None
    if not isinstance(usage, dict):
        return None
    meta = data.get("response_metadata") or {}
    return {
        "model": meta.get("model_name") if isinstance(meta, dict) else None,
        "tokens_in": usage.get("input_tokens"),
        "tokens_out": usage.get("output_tokens"),
        "cost_usd": meta.get("cost_usd") if isinstance(meta, dict) else None,
    }


def usage_summary(
    user_id: str, first: dt.date, last: dt.date, days: list[DayUsage]
) -> dict[str, Any]:
    """`stock-agent usage --json`: the range, the total, the totals by model, and each day."""
    from stock_agent.core.usage import UsageTotals

    by_model: dict[str, UsageTotals] = {}
    for day in days:
        for model, totals in day.by_model.items():
            by_model[model] = by_model.get(model, UsageTotals()) + totals
    total = sum(by_model.values(), UsageTotals())
    return {
        "user_id": user_id,
        "since": first.isoformat(),
        "until": last.isoformat(),
        "total": total.to_dict(),
        "models": {m: t.to_dict() for m, t in sorted(by_model.items())},
        "days": [d.to_dict() for d in days],
    }


def format_usage(user_id: str, first: dt.date, last: dt.date, days: list[DayUsage]) -> str:
    from stock_agent.core.usage import UsageTotals

    span = (last - first).days + 1
    title = f"Usage of {user_id} since {first.isoformat()} ({plural(span, 'day', 'days')})"
    if not days:
        return f"{title}\nNo chat turns counted in this range."
    summary = usage_summary(user_id, first, last, days)
    header = ("DATE", "TURNS", "TOKENS IN", "TOKENS OUT", "COST")
    rows = [
        (d.day, str(t.turns), f"{t.tokens_in:,}", f"{t.tokens_out:,}", t.cost_text)
        for d in days
        for t in [d.total]
    ]
    total = sum((d.total for d in days), UsageTotals())
    rows.append(
        (
            "total",
            str(total.turns),
            f"{total.tokens_in:,}",
            f"{total.tokens_out:,}",
            total.cost_text,
        )
    )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()
        for r in [header, *rows]
    ]
    models = [
        f"  {strip_control_line(model)}: {plural(t['turns'], 'turn', 'turns')}, {t['tokens_in']:,} in / "
        f"{t['tokens_out']:,} out, "
        + UsageTotals(
            t["turns"], t["tokens_in"], t["tokens_out"], t["cost_usd"] or 0.0, t["unpriced_turns"]
        ).cost_text
        for model, t in summary["models"].items()
    ]
    return "\n".join([title, *lines, "By model:", *models])
