"""The two sides of a chat benchmark, built the same way: one graph (same model, same tools),
the project's `ChatAgent` over `redis_history_factory` on one pooled client, and the seed-style
`BaselineAgent` over a new `RedisChatMessageHistory` per turn."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.baseline import BaselineAgent, baseline_key_prefix, community_history_factory
from bench.common import MARKET_DATA

PROJECT_AGENT = "bench_project"
BASELINE_AGENT = "bench_baseline"
USER = "bench"
TTL = 1800
# a fixed date, so the system prompt (and the characters sent) is the same on every run
TODAY = dt.date(2025, 6, 2)


def bench_tools(client: Any, agent_id: str) -> list[Any]:
    """The app's real tools over offline data (the instant model never calls them, but their
    schemas are bound to the model as in the app). None if the market modules are missing."""
    try:
        from stock_agent.agent.tools import ToolDeps, build_tools
        from stock_agent.providers.offline import CsvProvider
        from stock_agent.services.analysis import AnalysisService
        from stock_agent.services.market import MarketService
        from stock_agent.services.profiles import ProfileService
    except ImportError:
        return []
    from stock_agent.config import CacheTTLs
    from stock_agent.store.cache import ExecutionCache
    from stock_agent.store.keys import KeySpace
    from stock_agent.store.profile import ProfileStore

    keys = KeySpace(agent_id)
    service = MarketService(CsvProvider(MARKET_DATA), ExecutionCache(client, keys, CacheTTLs()))
    profiles = ProfileStore(client, keys)
    deps = ToolDeps(service, AnalysisService(service, profiles), ProfileService(profiles))
    return list(build_tools(deps))


@dataclass
class Sides:
    project: Any  # ChatAgent
    baseline: BaselineAgent
    client: Any  # the project's pooled client
    keys: Any  # the project's KeySpace
    window: int
    url: str

    def project_key(self, session_id: str) -> str:
        return str(self.keys.messages(USER, session_id))

    def baseline_key(self, session_id: str) -> str:
        return baseline_key_prefix(BASELINE_AGENT, USER) + session_id


def build_sides(
    url: str,
    model: Any,
    *,
    window: int = 20,
    wrap_factory: Callable[[Callable[..., Any]], Callable[..., Any]] = lambda f: f,
    max_connections: int = 32,
) -> Sides:
    from stock_agent.agent.agent import ChatAgent, build_graph
    from stock_agent.store.connection import make_client
    from stock_agent.store.keys import KeySpace
    from stock_agent.store.sessions import SessionStore

    client = make_client(url, max_connections=max_connections)
    keys = KeySpace(PROJECT_AGENT)
    graph = build_graph(model, bench_tools(client, PROJECT_AGENT))
    # The project's histories do no I/O when made (the turn's read is explicit), so only the
    # baseline's factory is wrapped for timing.
    project = ChatAgent(
        graph, SessionStore(client, keys, ttl=TTL, window=window), today=lambda: TODAY
    )
    baseline = BaselineAgent(
        graph,
        wrap_factory(community_history_factory(url, BASELINE_AGENT, TTL)),
        today=lambda: TODAY,
    )
    return Sides(project, baseline, client, keys, window, url)
