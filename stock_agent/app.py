"""The composition root: builds the store, data, cache and agent objects from settings.

Everything is created on first use, so a command pays only for what it touches
(`profile show` never imports LangChain, pandas or yfinance).
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from stock_agent.config import Settings
from stock_agent.store.keys import KeySpace

if TYPE_CHECKING:
    from collections.abc import Callable, Collection

    import redis

    from stock_agent.agent.agent import ChatAgent
    from stock_agent.market.service import FetchEvent, MarketService
    from stock_agent.store.cache import ExecutionCache
    from stock_agent.store.profile import ProfileStore


class App:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def keys(self) -> KeySpace:
        return KeySpace(self.settings.agent_id)

    @cached_property
    def client(self) -> redis.Redis:
        from stock_agent.store.connection import get_client

        return get_client(self.settings)

    @cached_property
    def profiles(self) -> ProfileStore:
        from stock_agent.store.profile import ProfileStore

        return ProfileStore(self.client, self.keys)

    @cached_property
    def cache(self) -> ExecutionCache:
        from stock_agent.store.cache import ExecutionCache

        # The lock outlives the provider's retries (up to ~20 s against a rate-limiting Yahoo),
        # so waiters keep waiting instead of all fetching at once.
        return ExecutionCache(self.client, self.keys, self.settings.cache_ttls, lock_timeout=25.0)

    def market(self, listener: Callable[[FetchEvent], None] | None = None) -> MarketService:
        from stock_agent.market.service import MarketService
        from stock_agent.providers import make_provider

        return MarketService(
            make_provider(self.settings),
            self.cache,
            benchmark_symbol=self.settings.benchmark_symbol,
            listener=listener,
        )

    def chat_agent(
        self,
        user_id: str,
        listener: Callable[[FetchEvent], None] | None = None,
        only_tools: Collection[str] | None = None,
    ) -> ChatAgent:
        """The agent for one user (its profile tools are bound to that user). `only_tools` keeps
        a subset, so a one-shot job does not send every tool's schema with every request."""
        from stock_agent.agent.agent import ChatAgent, build_graph, redis_history_factory
        from stock_agent.agent.model import build_model, explain_model_error
        from stock_agent.agent.tools import ToolContext, build_tools

        model = build_model(self.settings)
        tools = build_tools(
            ToolContext(service=self.market(listener), profiles=self.profiles, user_id=user_id)
        )
        if only_tools is not None:
            tools = [t for t in tools if t.name in only_tools]
        history = redis_history_factory(
            self.client,
            self.keys,
            ttl=self.settings.session_ttl,
            window=self.settings.history_window,
        )

        def explain(exc: BaseException) -> Any:
            return explain_model_error(exc, self.settings)

        return ChatAgent(build_graph(model, tools), history, explain_error=explain)
