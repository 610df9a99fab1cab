"""The fetch spinner (a terminal only) and the Ctrl-C that stops fetches at once, in-process and
in a real pseudo-terminal. Waits are deadlock guards, never timing assertions."""

from __future__ import annotations

import io
import os
import signal
import sys
import threading
from collections import Counter

import pexpect
import pytest

from stock_agent.providers.base import fetches_interrupted, resume_fetches
from stock_agent.services.market import FetchEvent, MarketService
from stock_agent.ui import progress as progress_module
from stock_agent.ui.progress import FetchProgress, stop_fetches_on_ctrl_c
from tests.conftest import REPO
from tests.test_provider_yahoo_network import SilentListener, online_env


def test_nothing_is_shown_on_a_pipe():
    stream = io.StringIO()
    with FetchProgress(["AAPL", "MSFT"], stream=stream) as shown:
        assert shown.enabled is False
        shown.on_fetch(FetchEvent("analysis", "AAPL", False, 0.1))
    assert stream.getvalue() == ""


def test_the_line_names_what_is_still_fetching(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: clock[0])
    shown = FetchProgress(["aapl", "MSFT", "AAPL"], enabled=False)
    with shown:
        assert shown.line() == ""  # a quarter of a second first: cache hits do not flash
        clock[0] += 3.24
        assert shown.line() == "fetching AAPL, MSFT · 3.2 s (Ctrl-C stops)"
        shown.on_fetch(FetchEvent("analysis", "AAPL", True, 0.0))
        assert shown.line() == "fetching MSFT · 3.2 s (Ctrl-C stops)"
        shown.on_fetch(FetchEvent("analysis", "MSFT", True, 0.0, stale=True))
        assert shown.line() == ""
    assert shown.done == {"AAPL": "cached", "MSFT": "stale"}


class Hanging:
    """A provider whose history waits until released (a network that never answers), and
    gives up when fetches are interrupted, as the real provider does."""

    name = "offline"
    capabilities = frozenset({"history", "quote"})

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = Counter[str]()
        self.in_flight = threading.Semaphore(0)

    def history(self, symbol, days=800):
        from stock_agent.providers.base import FetchInterrupted

        self.started[symbol] += 1
        self.in_flight.release()
        while not self.release.wait(0.02):
            if fetches_interrupted():
                raise FetchInterrupted("fetch interrupted")
        raise AssertionError("released: never in these tests")

    def identity(self, symbol):
        return "hanging"


def test_one_ctrl_c_stops_every_fetch_of_a_batch_at_once():
    provider = Hanging()
    service = MarketService(provider, None)
    before = signal.getsignal(signal.SIGINT)
    earlier = set(threading.enumerate())  # other tests' threads are not this one's business
    timer = None
    try:
        with pytest.raises(KeyboardInterrupt), stop_fetches_on_ctrl_c():

            def ctrl_c() -> None:
                for _ in range(3):  # AAPL, MSFT and TSLA are all waiting
                    assert provider.in_flight.acquire(timeout=60)
                os.kill(os.getpid(), signal.SIGINT)

            timer = threading.Thread(target=ctrl_c)
            timer.start()
            service.analyses(["AAPL", "MSFT", "TSLA"])  # would wait forever
        # Every pool thread ends while the provider is still hanging: only the interruption can
        # end them. (The pool joins the threads it knows; one whose start the Ctrl-C cut short
        # is not in its list yet, so each is waited for here, under a deadlock guard.)
        workers = [t for t in set(threading.enumerate()) - earlier if t.name.startswith("analysis")]
        for thread in workers:
            thread.join(60)
        assert not [t for t in workers if t.is_alive()]
    finally:
        provider.release.set()
        if timer is not None:
            timer.join(60)
        resume_fetches()
    assert signal.getsignal(signal.SIGINT) is before  # the handler is put back
    assert set(provider.started) == {"AAPL", "MSFT", "TSLA"}


def test_a_new_block_lets_fetches_run_again():
    from stock_agent.providers.base import interrupt_fetches

    interrupt_fetches()
    with stop_fetches_on_ctrl_c():
        assert not fetches_interrupted()


def test_outside_the_main_thread_nothing_is_installed():
    seen = []

    def worker() -> None:
        with stop_fetches_on_ctrl_c():
            seen.append(signal.getsignal(signal.SIGINT))

    before = signal.getsignal(signal.SIGINT)
    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(60)
    assert seen == [before]


def test_a_terminal_shows_the_spinner_and_one_ctrl_c_stops(cli_env, tmp_path):
    """In a real pseudo-terminal, against a network that never answers."""
    listener = SilentListener()
    env = online_env(cli_env, listener.url, tmp_path)
    env.pop("NO_COLOR", None)
    env["TERM"] = "xterm"
    child = pexpect.spawn(
        sys.executable,
        ["-m", "stock_agent", "--timeout", "120", "analyze", "AAPL", "MSFT"],
        env=env,
        cwd=str(REPO),
        encoding="utf-8",
        timeout=60,
        dimensions=(24, 100),
    )
    try:
        child.expect(r"fetching AAPL, MSFT · \d+\.\d s \(Ctrl-C stops\)")
        child.sendintr()
        child.expect("interrupted")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
        listener.close()
    assert child.exitstatus == 130


def test_in_a_chat_turn_one_ctrl_c_stops_the_tools_fetch(settings, redis_client):
    """The chat's hook: a turn run inside `stop_fetches_on_ctrl_c()`. LangGraph runs the tool
    in its own worker thread; the interrupt reaches it there, so the turn ends at once."""
    from dataclasses import replace

    from stock_agent.app import App
    from tests.openai_server import ScriptedOpenAI, text, tool_call

    provider = Hanging()
    with ScriptedOpenAI(api_key="test-key") as server:
        app = App(
            replace(
                settings,
                openai_api_key="test-key",
                openai_base_url=server.base_url,
                model="test-model",
            ),
            provider=provider,
        )
        server.queue(tool_call("analyze_stocks", {"symbols": ["AAPL", "MSFT"]}), text("never"))
        timer = None
        try:
            with pytest.raises(KeyboardInterrupt), stop_fetches_on_ctrl_c():

                def ctrl_c() -> None:
                    for _ in range(2):
                        assert provider.in_flight.acquire(timeout=60)
                    os.kill(os.getpid(), signal.SIGINT)

                timer = threading.Thread(target=ctrl_c)
                timer.start()
                app.agent().ask("How are AAPL and MSFT?", user_id="alice", session_id="c1")
        finally:
            provider.release.set()
            if timer is not None:
                timer.join(60)
            resume_fetches()
            app.close()
    assert set(provider.started) == {"AAPL", "MSFT"}
    waiting = [t for t in threading.enumerate() if t.name.startswith("analysis")]
    for thread in waiting:  # LangGraph does not wait for its tool thread; it ends by itself
        thread.join(60)
    assert not [t for t in waiting if t.is_alive()]
