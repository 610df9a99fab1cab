"""The composition root and the public Python API: `App` builds the store backend, the data
source, the cache, the services and the agent from settings, and closes what it opened.

    from stock_agent import App
    with App.from_env() as app:
        for a in app.analyze(["AAPL", "MSFT"], user_id="ana"):
            print(a.symbol, a.to_dict()["price"])
        print(app.agent().ask("How is AAPL?", user_id="ana", session_id="s1"))

Everything is created on first use, so a command pays only for what it touches
(`profile show` never imports LangChain, pandas or yfinance). Every front end (CLI, chat,
MCP server, watch mode) goes through an App; none of them holds a raw Redis client.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from stock_agent.config import Settings, load_settings
from stock_agent.core.limits import MAX_SYMBOLS_PER_ANALYZE
from stock_agent.store.keys import KeySpace, validate_id

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor
    from types import TracebackType

    from stock_agent.agent.agent import ChatAgent
    from stock_agent.providers.base import MarketDataProvider
    from stock_agent.services.analysis import AnalysisBatch, AnalysisService
    from stock_agent.services.market import MarketService
    from stock_agent.services.profiles import ProfileService
    from stock_agent.store.alerts import AlertStore
    from stock_agent.store.backend import StoreBackend
    from stock_agent.store.cache import ExecutionCache
    from stock_agent.store.journal import ReplayResult, TurnJournal
    from stock_agent.store.profile import ProfileStore
    from stock_agent.store.repair import RepairReport, UserCheck
    from stock_agent.store.sessions import SessionStore
    from stock_agent.store.status import StoreStatus
    from stock_agent.store.turns import TurnSaver
    from stock_agent.store.usage import UsageStore

log = logging.getLogger("stock_agent")
# Threads of the pool `aanalyze` runs data fetches in: bounded, so 200 concurrent requests
# queue instead of opening 200 connections to the data source at once.
ASYNC_WORKERS = 8


def settle_heap() -> None:
    """Take what is alive now out of the garbage collector's full passes (`gc.freeze()`), once
    per process, after the model stack is built.

    LangChain, LangGraph, pydantic and the OpenAI client leave a few hundred thousand
    long-lived objects (modules, classes, schemas). A full collection walks all of them: about
    200 ms on this project's 2-core reference machine, during which an event loop serving many
    users runs nothing (tests/test_async.py measured 195-276 ms stalls, every one a full
    collection). Frozen, they are never walked again; what turns create is collected as usual.
    A collection first, so no garbage is frozen with them."""
    import gc

    global _HEAP_SETTLED
    if _HEAP_SETTLED:
        return
    _HEAP_SETTLED = True
    gc.collect()
    gc.freeze()


_HEAP_SETTLED = False


class App:
    """One configured stock-agent: settings in, services out. A context manager: leaving it
    closes the store connection. Safe to share between threads."""

    def __init__(
        self,
        settings: Settings,
        *,
        provider: MarketDataProvider | None = None,
        notify: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self._provider = provider
        # One-line notices about the user's data (journal replayed, answers journaled at close):
        # the CLI prints them on stderr; by default they are logged as warnings.
        self.notify: Callable[[str], None] = log.warning if notify is None else notify
        self._replayed = False
        self._agents: dict[tuple[tuple[str, ...] | None, str], ChatAgent] = {}

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> App:
        """Settings from `env` (default: the process environment plus `.env`), like the CLI;
        keyword arguments override single settings (e.g. `data_dir=Path("examples/market")`)."""
        return cls(load_settings(env).with_overrides(**overrides))

    def __enter__(self) -> App:
        return self

    async def __aenter__(self) -> App:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """`close` from async code: the asyncio client is closed on its loop, the rest (the
        journal of unsaved turns, the sync pool) in a worker thread."""
        if "backend" in self.__dict__:
            await self.backend.aclose()
        executor = self.__dict__.pop("_executor", None)
        if executor is not None:
            executor.shutdown(wait=False)
        import asyncio

        await asyncio.to_thread(self.close)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Journal answered turns Redis did not take (after one more try), then close the store
        connection (the app can be used again: it reconnects on demand)."""
        if "turns" in self.__dict__:
            self._journal_unsaved()
        if "backend" in self.__dict__:
            self.backend.close()

    def _journal_unsaved(self) -> None:
        from stock_agent.errors import StockAgentError
        from stock_agent.store.turns import TurnsJournaled

        turns = self.turns
        try:
            journaled = turns.finish()
        except StockAgentError as exc:  # the disk refused too: say so, loudly
            self.notify(f"{exc.one_line()}; {turns.kept} answered turns are lost")
            return
        if journaled:
            reason = turns.last_failure.summary if turns.last_failure else None
            self.notify(str(TurnsJournaled(journaled, self.journal.path, reason)))

    # -- the store -------------------------------------------------------------------------

    @cached_property
    def backend(self) -> StoreBackend:
        from stock_agent.store.backend import StoreBackend

        return StoreBackend(self.settings)

    @property
    def keys(self) -> KeySpace:
        return self.backend.keys

    @cached_property
    def sessions(self) -> SessionStore:
        """The sessions. The first use also replays the journal of unsaved turns (nothing to
        do: one stat of the file), so a command sees the turns an earlier one could not save."""
        from stock_agent.store.sessions import SessionStore

        store = SessionStore(
            self.backend.client,
            self.keys,
            ttl=self.settings.session_ttl,
            window=self.settings.history_window,
            aclient=lambda: self.backend.aclient,
        )
        self.__dict__["sessions"] = store  # the replay below saves through it
        self._replay_at_start()
        return store

    @cached_property
    def alerts(self) -> AlertStore:
        """Which alert crossings have fired, per user, symbol and bar date (watch, MCP)."""
        from stock_agent.store.alerts import AlertStore

        return AlertStore(self.backend.client, self.keys)

    @cached_property
    def usage(self) -> UsageStore:
        """Each user's token usage and cost by day (`usage.days(user, first, last)`)."""
        from stock_agent.store.usage import UsageStore

        return UsageStore(self.backend.client, self.keys)

    @cached_property
    def journal(self) -> TurnJournal:
        """The local journal of answered turns Redis did not take (under STOCK_AGENT_HOME)."""
        from stock_agent.store.journal import TurnJournal

        return TurnJournal.in_home(self.settings.home)

    @cached_property
    def turns(self) -> TurnSaver:
        """Saves answered turns; keeps, retries and journals the ones Redis refuses."""
        from langchain_core.messages import message_to_dict, messages_from_dict

        from stock_agent.store.turns import TurnSaver

        return TurnSaver(
            self.sessions,
            self.journal,
            agent_id=self.settings.agent_id,
            encode=message_to_dict,
            decode=messages_from_dict,
            where=self.backend.display_url,
            embedded=self.settings.embedded,
        )

    def _replay_at_start(self) -> None:
        # Once per App, when a command first touches memory; `store status`, `store stop` and
        # `doctor` never get here, so a replay that cannot run never stands in their way.
        if not self._replayed:
            self._replayed = True
            self.replay_journal()

    def replay_journal(self) -> ReplayResult | None:
        """Save the turns earlier processes left in the journal, in order, each once. Never
        raises and never waits long (another process's replay: 0.5 s; a store that is down:
        its usual retries, once); what it did is one `notify` line. None: no journal."""
        if not self.journal.path.exists():
            return None
        try:
            result = self.turns.replay()
            line = self.turns.describe_replay(result)
        except Exception as exc:  # a replay must never fail the command that runs it
            log.debug("journal replay failed", exc_info=True)
            self.notify(f"journal: not replayed ({type(exc).__name__}: {exc})")
            return None
        if line:
            self.notify(line)
        return result

    @cached_property
    def profiles(self) -> ProfileStore:
        """The profiles (the first use replays the journal, as `sessions` does)."""
        from stock_agent.store.profile import ProfileStore

        store = ProfileStore(self.backend.client, self.keys)
        self._replay_at_start()
        return store

    @cached_property
    def cache(self) -> ExecutionCache:
        from stock_agent.store.cache import ExecutionCache

        # The lock outlives the provider's retries (up to ~20 s against a rate-limiting Yahoo),
        # so waiters keep waiting instead of all fetching at once.
        return ExecutionCache(
            self.backend.client,
            self.keys,
            self.settings.cache_ttls,
            lock_timeout=self.settings.timeout + 5,
        )

    def status(self, *, count_keys: bool = False, count_cache: bool = True) -> StoreStatus:
        """Which store, its server, memory, eviction policy and cache entries, at a cost that
        does not grow with the keyspace; `count_keys=True` adds this agent's keys by kind (a
        SCAN of the whole keyspace)."""
        from stock_agent.store.status import collect_status

        return collect_status(self.backend, count_keys=count_keys, count_cache=count_cache)

    def check_store(self, user_id: str) -> UserCheck:
        """`doctor`'s probe of `user_id`'s keys: may this Redis user really read, write and run
        scripts on them (ACL), and is the stored data readable? Two round trips."""
        from stock_agent.store.history import is_readable
        from stock_agent.store.repair import check_user

        validate_id(user_id, "user id")
        return check_user(self.backend.client, self.keys, user_id, readable=is_readable)

    def repair_store(self, user_id: str | None) -> RepairReport:
        """`doctor --repair`: set damaged keys of `user_id` (None: every user of this agent)
        aside, drop unreadable messages (kept aside too), rebuild the sessions index."""
        from stock_agent.store.history import is_readable
        from stock_agent.store.repair import repair

        if user_id is not None:
            validate_id(user_id, "user id")
        return repair(
            self.backend.client,
            self.keys,
            None if user_id is None else [user_id],
            readable=is_readable,
            session_ttl=self.settings.session_ttl,
        )

    # -- data and services -----------------------------------------------------------------

    @property
    def provider(self) -> MarketDataProvider:
        if self._provider is None:
            from stock_agent.providers import make_provider

            self._provider = make_provider(self.settings)
        return self._provider

    @cached_property
    def market(self) -> MarketService:
        from stock_agent.services.market import MarketService

        return MarketService(
            self.provider, self.cache, benchmark_symbol=self.settings.benchmark_symbol
        )

    @cached_property
    def analysis(self) -> AnalysisService:
        from stock_agent.services.analysis import AnalysisService

        return AnalysisService(self.market, self.profiles)

    @cached_property
    def profile_service(self) -> ProfileService:
        from stock_agent.services.profiles import ProfileService

        return ProfileService(self.profiles)

    def analyze(self, symbols: Sequence[str], *, user_id: str | None = None) -> AnalysisBatch:
        """Analyse `symbols` (personalised with `user_id`'s profile when given). Iterating the
        result gives the typed `Analysis` of each symbol that worked; `.errors` the others."""
        self._check_analyze(symbols, user_id)
        return self.analysis.analyze(symbols, user_id=user_id)

    async def aanalyze(
        self, symbols: Sequence[str], *, user_id: str | None = None
    ) -> AnalysisBatch:
        """`analyze` from async code: the same checks, the fetches and the analysis in this
        App's bounded thread pool (`ASYNC_WORKERS` threads), so the event loop never waits."""
        import asyncio
        import functools

        self._check_analyze(symbols, user_id)
        call = functools.partial(self.analysis.analyze, list(symbols), user_id=user_id)
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    @cached_property
    def _executor(self) -> ThreadPoolExecutor:
        from concurrent.futures import ThreadPoolExecutor

        return ThreadPoolExecutor(ASYNC_WORKERS, thread_name_prefix="stock-agent")

    def _check_analyze(self, symbols: Sequence[str], user_id: str | None) -> None:
        if user_id is not None:
            validate_id(user_id, "user id")
        if len(symbols) > MAX_SYMBOLS_PER_ANALYZE:
            from stock_agent.errors import InvalidInput

            raise InvalidInput(
                f"too many symbols ({len(symbols)})",
                fix=f"analyze at most {MAX_SYMBOLS_PER_ANALYZE} at a time",
            )

    # -- the agent -------------------------------------------------------------------------

    def agent(
        self, *, only_tools: Collection[str] | None = None, model: str | None = None
    ) -> ChatAgent:
        """The agent, for any user (`agent.ask(text, user_id=..., session_id=...)`). Built once
        per tool set and model. `only_tools` keeps a subset, so a one-shot job does not send
        every tool's schema with every request; `model` names another model than the
        settings' (the chat's `/model NAME`)."""
        name = model or self.settings.model
        key = (tuple(sorted(only_tools)) if only_tools is not None else None, name)
        found = self._agents.get(key)
        if found is None:
            found = self._agents[key] = self._build_agent(only_tools, name)
        return found

    def _build_agent(self, only_tools: Collection[str] | None, model_name: str) -> ChatAgent:
        from dataclasses import replace

        from stock_agent.agent.agent import ChatAgent, build_graph
        from stock_agent.agent.model import build_model, explain_model_error
        from stock_agent.agent.tools import ToolDeps, build_tools

        settings = (
            self.settings
            if model_name == self.settings.model
            else replace(self.settings, model=model_name)
        )
        model = build_model(settings)
        # only the tools the data source can answer: no schema sent for a tool that can only fail
        tools = build_tools(
            ToolDeps(self.market, self.analysis, self.profile_service), self.provider.capabilities
        )
        if only_tools is not None:
            tools = [t for t in tools if t.name in only_tools]

        def explain(exc: BaseException) -> Any:
            return explain_model_error(exc, settings)

        from stock_agent.core.usage import parse_prices

        agent = ChatAgent(
            build_graph(model, tools),
            self.sessions,
            explain_error=explain,
            saver=self.turns,
            model_name=model_name,
            prices=parse_prices(settings.prices or ""),
        )
        settle_heap()
        return agent
