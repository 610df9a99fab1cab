"""The baseline: the seed's memory approach, done right.

As in the seed, `RunnableWithMessageHistory` builds a new
`langchain_community.chat_message_histories.RedisChatMessageHistory(session_id, url=...,
key_prefix=..., ttl=...)` for every turn, so every turn creates a new client and opens a new
connection. The one fix over the seed is the wrapping: the wrapper wraps a turn function (text
in, history as a list, the final answer out as one `AIMessage`), the same shape as the project's
`ChatAgent`, so the turn is actually saved and the model sees the earlier turns. The history is
unbounded, as the community class has no window.

Both sides share the graph, the system prompt and the answer extraction, so what differs between
them is the memory layer only.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Callable
from typing import Any

from stock_agent.agent.agent import RECURSION_LIMIT, final_answer
from stock_agent.agent.prompts import system_prompt
from stock_agent.store.profile import Profile


def baseline_key_prefix(agent_id: str, user_id: str) -> str:
    """The community class stores `key_prefix + session_id`; this mirrors the design's key."""
    return f"agent:memory:{agent_id}:{user_id}:"


def community_history_factory(url: str, agent_id: str, ttl: int) -> Callable[[str, str], Any]:
    """`(user_id, session_id) -> RedisChatMessageHistory`, a new client each call (the seed's way)."""
    from langchain_community.chat_message_histories import RedisChatMessageHistory

    def factory(user_id: str, session_id: str) -> Any:
        return RedisChatMessageHistory(
            session_id, url=url, key_prefix=baseline_key_prefix(agent_id, user_id), ttl=ttl
        )

    return factory


class BaselineAgent:
    """`ask(text, user_id=, session_id=)` like `ChatAgent.ask`, over the community history."""

    def __init__(
        self,
        graph: Any,
        history_factory: Callable[[str, str], Any],
        *,
        today: Callable[[], dt.date] = dt.date.today,
    ) -> None:
        from langchain_core.runnables import ConfigurableFieldSpec, RunnableLambda
        from langchain_core.runnables.history import RunnableWithMessageHistory

        self.graph = graph
        self.today = today
        specs = [
            ConfigurableFieldSpec(id=name, annotation=str, default="", is_shared=True)
            for name in ("user_id", "session_id")
        ]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.runnable = RunnableWithMessageHistory(
                RunnableLambda(self._turn, name="baseline_turn"),
                history_factory,
                input_messages_key="input",
                history_messages_key="history",
                history_factory_config=specs,
            )

    def _turn(self, inputs: dict[str, Any], config: Any) -> Any:
        from langchain_core.messages import HumanMessage, SystemMessage

        messages = [
            SystemMessage(system_prompt(Profile(), self.today())),
            *inputs.get("history", []),
            HumanMessage(inputs["input"]),
        ]
        result = self.graph.invoke({"messages": messages}, config=config)
        return final_answer(result["messages"])

    def ask(self, text: str, *, user_id: str, session_id: str) -> str:
        config = {
            "configurable": {"user_id": user_id, "session_id": session_id},
            "recursion_limit": RECURSION_LIMIT,
        }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            answer = self.runnable.invoke({"input": text}, config=config)
        return str(answer.text)
