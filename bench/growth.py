"""2. Growth with conversation length.

For each length N, a session of N turns is written on each side through the side's own history
class (`SessionHistory.add_messages`, one Lua call per turn; `RedisChatMessageHistory.add_messages`,
a push and an expire per message), so the stored state is what N real turns leave behind. Then:
- history load time: `.messages` on an already connected history object, repeated, the two
  sides alternating in blocks (the baseline's per-turn connection is in benchmark 1, not here);
- what the model receives: real turns through each agent, recorded inside the instant model
  (number of messages and characters of text, system prompt included).
Messages are synthetic and of fixed length (an 80-character question, a 700-character answer).
"""

from __future__ import annotations

import time
from typing import Any

from bench.common import Context, Result, Row, Stat
from bench.instrument import make_instant_model, message_chars
from bench.sides import BASELINE_AGENT, TTL, USER, build_sides

GROUP = "2. growth with conversation length"
READ_BLOCK = 5
ANSWER_BODY = (
    "AAPL closed at 196.40, up 2.1% on the week, above its 50-day (189.7) and 200-day (182.3) "
    "averages; RSI(14) is 61, so it is firm but not overbought. MSFT rose 0.8% to 421.10, RSI 55, "
    "and sits mid-way in its Bollinger Bands; its 1-month return is 3.4% with volatility of 21% "
    "annualised. Neither breaches your -5% alert threshold. AAPL's beta against SPY is 1.12, "
    "MSFT's 0.94, so AAPL carries a little more market risk. Momentum (MACD above its signal) "
    "favours AAPL in the short term; MSFT's trend is steadier. With a 100k portfolio, a 5% "
    "position is 5,000, about 25 AAPL shares or 12 MSFT shares. Watch AAPL's 52-week high at "
    "199.6 as resistance."
)


def question(turn: int) -> str:
    return f"Turn {turn:05d}: how did AAPL and MSFT do this week, and is either overbought?"


def answer(turn: int) -> str:
    return f"Turn {turn:05d}: {ANSWER_BODY}"[:700]


def _populate(history: Any, turns: int) -> None:
    from langchain_core.messages import AIMessage, HumanMessage

    for turn in range(turns):
        history.add_messages([HumanMessage(question(turn)), AIMessage(answer(turn))])


def run(ctx: Context) -> Result:
    from bench.baseline import community_history_factory
    from stock_agent.store.history import SessionHistory

    sizes = ctx.sizes
    received: list[list[Any]] = []
    sides = build_sides(ctx.server.url, make_instant_model(received.append))
    baseline_factory = community_history_factory(ctx.server.url, BASELINE_AGENT, TTL)
    result = Result("growth")
    per_length: dict[int, dict[str, Any]] = {}

    for length in sizes.growth_lengths:
        session = f"growth-{length}"
        project_history = SessionHistory(
            sides.client, sides.keys, USER, session, ttl=TTL, window=sides.window
        )
        baseline_history = baseline_factory(USER, session)
        started = time.perf_counter()
        _populate(project_history, length)
        _populate(baseline_history, length)
        populate_s = time.perf_counter() - started

        # Sides alternate in blocks whose first sample is not kept: right after the other side
        # decoded a long history, the process's caches and allocator are disturbed, which no
        # real process (running one side only) would see.
        loads: dict[str, list[float]] = {"project": [], "baseline": []}
        loaded: dict[str, int] = {}
        histories = {"project": project_history, "baseline": baseline_history}
        blocks = max(2, sizes.growth_reads // READ_BLOCK)
        for block in range(blocks):
            for side in ("baseline", "project") if block % 2 == 0 else ("project", "baseline"):
                for read in range(READ_BLOCK + 1):
                    started = time.perf_counter()
                    messages = histories[side].messages
                    if read:
                        loads[side].append((time.perf_counter() - started) * 1000)
                    loaded[side] = len(messages)

        sent: dict[str, list[tuple[int, int]]] = {"project": [], "baseline": []}
        turn_ms: dict[str, list[float]] = {"project": [], "baseline": []}
        asked = 0
        for i in range(sizes.growth_turns):
            for side in ("baseline", "project") if i % 2 == 0 else ("project", "baseline"):
                agent = sides.project if side == "project" else sides.baseline
                for kept in (False, True):  # a turn to settle in, then the measured one
                    received.clear()
                    started = time.perf_counter()
                    agent.ask(question(length + asked), user_id=USER, session_id=session)
                    elapsed = (time.perf_counter() - started) * 1000
                    asked += 1
                    if kept:
                        turn_ms[side].append(elapsed)
                    messages = received[-1]
                    sent[side].append((len(messages), message_chars(messages)))
        per_length[length] = {
            "load_ms": {side: Stat.of(v) for side, v in loads.items()},
            "messages_loaded": loaded,
            # the first real turn at this length: N turns already stored
            "messages_sent": {side: v[0][0] for side, v in sent.items()},
            "chars_sent": {side: v[0][1] for side, v in sent.items()},
            "turn_ms": {side: Stat.of(v) for side, v in turn_ms.items()},
            "populate_s": round(populate_s, 3),
        }
        baseline_history.redis_client.close()

    window_plus = sides.window + 2  # the window, the system prompt and the new question
    first, last = sizes.growth_lengths[0], sizes.growth_lengths[-1]
    flat_chars = (
        per_length[last]["chars_sent"]["project"]
        <= 1.05 * per_length[first]["chars_sent"]["project"]
    )
    # p10, not the median: the fastest loads are the least disturbed by other processes
    flat_load = (
        per_length[last]["load_ms"]["project"].p10
        <= 1.5 * per_length[first]["load_ms"]["project"].p10 + 0.1
    )
    for length, data in per_length.items():
        is_last = length == last
        result.rows.append(
            Row(GROUP, f"history load after {length:,} turns", "ms", data["load_ms"]["project"],
                data["load_ms"]["baseline"], "flat" if is_last else None,
                flat_load if is_last else None,
                f"p10 {data['load_ms']['project'].p10:.3f} ms vs "
                f"{per_length[first]['load_ms']['project'].p10:.3f} ms at {first}"
                if is_last else "")
        )  # fmt: skip
    for length, data in per_length.items():
        is_last = length == last
        result.rows.append(
            Row(GROUP, f"messages sent to the model at turn {length + 1:,}", "",
                data["messages_sent"]["project"], data["messages_sent"]["baseline"],
                f"<= {window_plus}" if is_last else None,
                data["messages_sent"]["project"] <= window_plus if is_last else None,
                f"window {sides.window} + system + question" if is_last else "")
        )  # fmt: skip
    for length, data in per_length.items():
        is_last = length == last
        result.rows.append(
            Row(GROUP, f"characters sent to the model at turn {length + 1:,}", "chars",
                data["chars_sent"]["project"], data["chars_sent"]["baseline"],
                "flat" if is_last else None, flat_chars if is_last else None)
        )  # fmt: skip
    for length, data in per_length.items():
        result.rows.append(
            Row(GROUP, f"whole turn after {length:,} turns, instant model", "ms",
                data["turn_ms"]["project"], data["turn_ms"]["baseline"])
        )  # fmt: skip

    result.details = {
        "model": "in-process instant chat model; messages recorded inside it",
        "window": sides.window,
        "chars": "sum of message text (content and tool-call arguments), system prompt included",
        "per_length": {
            str(length): {
                key: (
                    {s: v.to_dict() for s, v in value.items()}
                    if isinstance(next(iter(value.values())), Stat)
                    else value
                )
                if isinstance(value, dict)
                else value
                for key, value in data.items()
            }
            for length, data in per_length.items()
        },
    }
    sides.client.close()
    return result
