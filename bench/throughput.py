"""6. Throughput: chat turns per second with 1, 8 and 32 concurrent sessions (one thread per
session, each running its turns one after another) on one server, with the instant model.
The two sides alternate run by run; every run uses new sessions.

Afterwards every session is checked: what the model received at each turn must be exactly the
earlier turns of that session (within the window for the project), and the stored list must be
exactly the expected messages, in order. Lost, duplicated or foreign messages are counted.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from typing import Any

from bench.common import Context, Result, Row, Stat
from bench.instrument import make_instant_model
from bench.sides import USER, Sides, build_sides

GROUP = "6. throughput (instant model)"


def question(session: str, turn: int) -> str:
    return f"{session} turn {turn:03d}: how is AAPL doing?"


def expected_messages(session: str, turns: int) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for turn in range(turns):
        text = question(session, turn)
        pairs += [("human", text), ("ai", f"ok: {text}")]
    return pairs


class Recorder:
    """What the model received, by question (every question is unique in a run)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.inputs: dict[str, list[tuple[str, str]]] = {}

    def __call__(self, messages: list[Any]) -> None:
        history = [(m.type, m.text) for m in messages if m.type != "system"]
        *earlier, last = history
        with self.lock:
            self.inputs[last[1]] = earlier


def _stored(sides: Sides, side: str, session: str) -> list[tuple[str, str]]:
    key = sides.project_key(session) if side == "project" else sides.baseline_key(session)
    raw = sides.client.lrange(key, 0, -1)  # newest first on both sides
    return [(m["type"], m["data"]["content"]) for m in (json.loads(r) for r in reversed(raw))]


def window_tail(messages: list[tuple[str, str]], window: int) -> list[tuple[str, str]]:
    """The longest suffix of at most `window` messages that starts a turn: what the project keeps
    and what it hands the model."""
    tail = messages[-window:] if window else []
    while tail and tail[0][0] != "human":
        tail = tail[1:]
    return tail


def _check(
    sides: Sides, side: str, sessions: list[str], turns: int, recorder: Recorder
) -> dict[str, int]:
    def kept(messages: list[tuple[str, str]]) -> list[tuple[str, str]]:
        return window_tail(messages, sides.window) if side == "project" else messages

    problems = {"lost": 0, "duplicated": 0, "misordered": 0, "wrong_model_input": 0}
    for session in sessions:
        expected = expected_messages(session, turns)
        for turn in range(turns):
            seen = recorder.inputs.get(question(session, turn))
            if seen != kept(expected[: 2 * turn]):
                problems["wrong_model_input"] += 1
        stored, wanted = _stored(sides, side, session), kept(expected)
        missing = Counter(wanted) - Counter(stored)
        extra = Counter(stored) - Counter(wanted)
        problems["lost"] += sum(missing.values())
        problems["duplicated"] += sum(extra.values())
        if stored != wanted and not missing and not extra:
            problems["misordered"] += 1
    return problems


def _run_side(
    sides: Sides, side: str, sessions: list[str], turns: int
) -> tuple[float, list[BaseException]]:
    agent = sides.project if side == "project" else sides.baseline
    barrier = threading.Barrier(len(sessions) + 1)
    errors: list[BaseException] = []

    def worker(session: str) -> None:
        barrier.wait()
        try:
            for turn in range(turns):
                agent.ask(question(session, turn), user_id=USER, session_id=session)
        except BaseException as exc:  # counted below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(s,), daemon=True) for s in sessions]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join(300)
    return time.perf_counter() - started, errors


def run(ctx: Context) -> Result:
    sizes = ctx.sizes
    recorder = Recorder()
    sides = build_sides(ctx.server.url, make_instant_model(recorder))
    turns = sizes.throughput_turns
    rates: dict[int, dict[str, list[float]]] = {}
    problems: dict[int, dict[str, Counter[str]]] = {}
    if sides.window < 2 * turns:
        ctx.log(
            f"  (sessions outgrow the project's window of {sides.window}: trimming is checked too)"
        )
    for count in sizes.throughput_sessions:
        rates[count] = {"project": [], "baseline": []}
        problems[count] = {"project": Counter(), "baseline": Counter()}
        for rep in range(sizes.throughput_repeats):
            for side in ("baseline", "project") if rep % 2 == 0 else ("project", "baseline"):
                sessions = [f"tp-{side[0]}-{count}-{rep}-{i}" for i in range(count)]
                seconds, errors = _run_side(sides, side, sessions, turns)
                if errors:
                    raise RuntimeError(f"{side}, {count} sessions: a turn failed: {errors[0]!r}")
                rates[count][side].append(count * turns / seconds)
                problems[count][side].update(_check(sides, side, sessions, turns, recorder))
    sides.client.close()

    result = Result("throughput")
    for count in sizes.throughput_sessions:
        result.rows.append(
            Row(GROUP, f"{count} concurrent session{'s' if count > 1 else ''}", "turns/s",
                Stat.of(rates[count]["project"]), Stat.of(rates[count]["baseline"]))
        )  # fmt: skip
    bad = {
        side: sum(sum(problems[c][side].values()) for c in sizes.throughput_sessions)
        for side in ("project", "baseline")
    }
    result.rows.append(
        Row(GROUP, "lost, duplicated, misordered or wrong model inputs", "", bad["project"],
            bad["baseline"], "0", bad["project"] == 0,
            f"{sum(sizes.throughput_sessions) * sizes.throughput_repeats} sessions checked per side")
    )  # fmt: skip
    result.details = {
        "model": "in-process instant chat model",
        "turns_per_session": turns,
        "repeats": sizes.throughput_repeats,
        "window": sides.window,
        "problems": {str(c): {s: dict(v) for s, v in p.items()} for c, p in problems.items()},
        "turns_per_second": {
            str(c): {s: Stat.of(v).to_dict() for s, v in r.items()} for c, r in rates.items()
        },
    }
    return result
