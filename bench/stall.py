"""Does the async API ever hold the event loop? Fifty users' turns run at once in one loop
through `ChatAgent.aask`, against the echo model server in its own process (as a real model
server would be: in this process its request handling would take turns with the loop for
the interpreter lock), while a 10 ms heartbeat timer measures how late the loop runs it.
Its worst lateness is the longest stretch anything blocked the loop.

Shared by tests/test_async.py (which checks the turns and prints the figure) and
bench/load.py (which reports it over several runs against the 50 ms target).
"""

from __future__ import annotations

import asyncio
from typing import Any


class Heartbeat:
    """Measures how late the event loop runs a 10 ms timer: its worst lag is the longest
    stretch something blocked the loop."""

    def __init__(self) -> None:
        self.max_lag = 0.0
        self._stop = asyncio.Event()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            start = loop.time()
            await asyncio.sleep(0.01)
            self.max_lag = max(self.max_lag, loop.time() - start - 0.01)

    def stop(self) -> None:
        self._stop.set()


async def concurrent_turns(
    app: Any, users: list[str], *, apart: float = 0.0
) -> tuple[list[str], float]:
    """Two turns per user (`"{user} one"`, `"{user} two"` in session s1), every user at once
    (or arriving `apart` seconds after the previous one, while the others chat); returns the replies in user order and the worst loop stall in seconds. One turn runs
    first: the first async call builds the asyncio clients (once per process). The caller
    closes the app (`await app.aclose()`) in the same loop."""
    agent = app.agent()
    await agent.aask("warm up", user_id="warmup", session_id="s1")
    beat = Heartbeat()
    ticker = asyncio.ensure_future(beat.run())

    async def chat(user: str, n: int) -> list[str]:
        if apart:
            await asyncio.sleep(n * apart)
        first = await agent.aask(f"{user} one", user_id=user, session_id="s1")
        second = await agent.aask(f"{user} two", user_id=user, session_id="s1")
        return [first, second]

    try:
        replies = await asyncio.wait_for(
            asyncio.gather(*(chat(u, n) for n, u in enumerate(users))), 120
        )
    finally:
        beat.stop()
        await ticker
    return [r for pair in replies for r in pair], beat.max_lag


def worst_stalls(
    settings: Any, base_url: str, runs: int, spacings: tuple[float, ...] = (0.0,), users: int = 50
) -> dict[float, list[float]]:
    """For each spacing of arrivals (seconds between one user's start and the next's; 0: all
    at once), the worst stall (s) of each of `runs` runs of `concurrent_turns` for `users` new
    users. All in one event loop, as a server has one (langchain-openai keeps one async HTTP
    client per model server for the whole process, whose connections belong to the first
    loop that used them)."""
    from dataclasses import replace

    from stock_agent.app import App

    app = App(
        replace(settings, openai_api_key="test-key", openai_base_url=base_url, model="test-model")
    )

    async def main() -> dict[float, list[float]]:
        lags: dict[float, list[float]] = {}
        try:
            for apart in spacings:
                for run in range(runs):
                    names = [f"stall{len(lags)}-{run}-{i:02d}" for i in range(users)]
                    replies, lag = await concurrent_turns(app, names, apart=apart)
                    if replies != [f"re: {u} {n}" for u in names for n in ("one", "two")]:
                        raise AssertionError("a user got another reply than their own")
                    lags.setdefault(apart, []).append(lag)
        finally:
            await app.aclose()
        return lags

    try:
        return asyncio.run(main())
    finally:
        app.close()
