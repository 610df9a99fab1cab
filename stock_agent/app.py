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

from collections.abc import Collection, Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from stock_agent.config import Settings, load_settings
from stock_agent.core.limits import MAX_SYMBOLS_PER_ANALYZE
from stock_agent.store.keys import KeySpace, validate_id

if TYPE_CHECKING:
    from types import TracebackType

    from stock_agent.agent.agent import ChatAgent
    from stock_agent.providers.base import MarketDataProvider
    from stock_agent.services.analysis import AnalysisBatch, AnalysisService
    from stock_agent.services.market import MarketService
    from stock_agent.services.profiles import ProfileService
    from stock_agent.store.backend import StoreBackend
    from stock_agent.store.cache import ExecutionCache
    from stock_agent.store.profile import ProfileStore
    from stock_agent.store.repair import RepairReport, UserCheck
    from stock_agent.store.sessions import SessionStore
    from stock_agent.store.status import StoreStatus


class App:
    """One configured stock-agent: settings in, services out. A context manager: leaving it
    closes the store connection. Safe to share between threads."""

    def __init__(self, settings: Settings, *, provider: MarketDataProvider | None = None) -> None:
        self.settings = settings
        self._provider = provider
        self._agents: dict[tuple[str, ...] | None, ChatAgent] = {}

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> App:
        """Settings from `env` (default: the process environment plus `.env`), like the CLI;
        keyword arguments override single settings (e.g. `data_dir=Path("examples/market")`)."""
        return cls(load_settings(env).with_overrides(**overrides))

    def __enter__(self) -> App:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the store connection (the app can be used again: it reconnects on demand)."""
        if "backend" in self.__dict__:
            self.backend.close()

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
        from stock_agent.store.sessions import SessionStore

        return SessionStore(
            self.backend.client,
            self.keys,
            ttl=self.settings.session_ttl,
            window=self.settings.history_window,
        )

    @cached_property
    def profiles(self) -> ProfileStore:
        from stock_agent.store.profile import ProfileStore

        return ProfileStore(self.backend.client, self.keys)

    @cached_property
    def cache(self) -> ExecutionCache:
        from stock_agent.store.cache import ExecutionCache

        # The lock outlives the provider's retries (up to ~20 s against a rate-limiting Yahoo),
        # so waiters keep waiting instead of all fetching at once.
        return ExecutionCache(
            self.backend.client, self.keys, self.settings.cache_ttls, lock_timeout=25.0
        )

    def status(self, *, count_keys: bool = True) -> StoreStatus:
        """Which store, its server, memory, eviction policy and (unless `count_keys=False`,
        which saves a SCAN of this agent's keys) this agent's keys by kind."""
        from stock_agent.store.status import collect_status

        return collect_status(self.backend, count_keys=count_keys)

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
        if user_id is not None:
            validate_id(user_id, "user id")
        if len(symbols) > MAX_SYMBOLS_PER_ANALYZE:
            from stock_agent.errors import InvalidInput

            raise InvalidInput(
                f"too many symbols ({len(symbols)})",
                fix=f"analyse at most {MAX_SYMBOLS_PER_ANALYZE} at a time",
            )
        return self.analysis.analyze(symbols, user_id=user_id)

    # -- the agent -------------------------------------------------------------------------

    def agent(self, *, only_tools: Collection[str] | None = None) -> ChatAgent:
        """The agent, for any user (`agent.ask(text, user_id=..., session_id=...)`). Built once
        per tool set. `only_tools` keeps a subset, so a one-shot job does not send every tool's
        schema with every request."""
        key = tuple(sorted(only_tools)) if only_tools is not None else None
        found = self._agents.get(key)
        if found is None:
            found = self._agents[key] = self._build_agent(only_tools)
        return found

    def _build_agent(self, only_tools: Collection[str] | None) -> ChatAgent:
        from stock_agent.agent.agent import ChatAgent, build_graph
        from stock_agent.agent.model import build_model, explain_model_error
        from stock_agent.agent.tools import ToolDeps, build_tools

        model = build_model(self.settings)
        tools = build_tools(ToolDeps(self.market, self.analysis, self.profile_service))
        if only_tools is not None:
            tools = [t for t in tools if t.name in only_tools]

        def explain(exc: BaseException) -> Any:
            return explain_model_error(exc, self.settings)

        return ChatAgent(build_graph(model, tools), self.sessions, explain_error=explain)
