"""The agent with its memory: a LangChain 1.x `create_agent` graph wrapped in
`RunnableWithMessageHistory` over the Redis `SessionHistory`.

This is the only module that knows about `RunnableWithMessageHistory` (deprecated in
langchain-core 1.x, removed in 2.0): a later move to LangGraph persistence touches this file.

Why the seed's wrapping saved nothing: a `create_agent` graph takes and returns a dict of
`messages`, which the wrapper cannot turn into messages to save. Here the wrapper wraps a small
turn function instead: its input is the user's text, its history arrives as a list, and its output
is the final answer as one `AIMessage`. Each turn so reads memory once (history and profile in
one round trip) and writes it once (the user's message and the answer). The tool-call trail of a
turn is not kept: tool results are cached in Redis, fresh data is fetched again when needed, and
the next turn's request stays small.
"""

from __future__ import annotations

import datetime as dt
import uuid
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import ConfigurableFieldSpec, RunnableConfig, RunnableLambda

from stock_agent.agent.prompts import system_prompt
from stock_agent.errors import StockAgentError
from stock_agent.store.history import SessionHistory
from stock_agent.store.profile import Profile, ProfileStore

if TYPE_CHECKING:
    import redis
    from langchain_core.callbacks import BaseCallbackHandler
    from langchain_core.language_models import BaseChatModel
    from langchain_core.tools import BaseTool

    from stock_agent.store.keys import KeySpace

# Model calls plus tool calls in one turn; a loop past this is cut off.
RECURSION_LIMIT = 24

HistoryFactory = Callable[[str, str], SessionHistory]


def build_graph(model: BaseChatModel, tools: Sequence[BaseTool]) -> Any:
    """The tool-calling agent. The system prompt is sent per turn (it carries today's date and
    the user's profile), so the graph itself has none."""
    from langchain.agents import create_agent

    return create_agent(model, list(tools), name="stock_agent")


def redis_history_factory(
    client: redis.Redis, keys: KeySpace, *, ttl: int, window: int
) -> HistoryFactory:
    """`(user_id, session_id) -> SessionHistory` sharing the process's pooled client."""

    def factory(user_id: str, session_id: str) -> SessionHistory:
        return SessionHistory(
            client,
            keys,
            user_id,
            session_id,
            ttl=ttl,
            window=window,
            profile_key=keys.profile(user_id),
        )

    return factory


def final_answer(messages: Sequence[BaseMessage]) -> AIMessage:
    """The last assistant message, as plain text to keep in memory (no tool calls, no metadata).
    Its unique id lets the history recognise a retried save."""
    for message in reversed(messages):
        if isinstance(message, AIMessage) and not message.tool_calls:
            return AIMessage(content=message.text, id=f"answer-{uuid.uuid4().hex}")
    return AIMessage(content="", id=f"answer-{uuid.uuid4().hex}")


class ChatAgent:
    """The agent, its memory and its prompt. `ask` runs one remembered turn; `run_once` runs
    a turn with no memory (the one-shot `analyze`)."""

    def __init__(
        self,
        graph: Any,
        history_factory: HistoryFactory,
        *,
        today: Callable[[], dt.date] = dt.date.today,
        explain_error: Callable[[BaseException], StockAgentError | None] | None = None,
    ) -> None:
        self.graph = graph
        self.history_factory = history_factory
        self.today = today
        self.explain_error = explain_error
        from langchain_core.runnables.history import RunnableWithMessageHistory

        with warnings.catch_warnings():
            # Deprecated in langchain-core 1.x; kept deliberately (see the module docstring).
            warnings.simplefilter("ignore")
            self.runnable = RunnableWithMessageHistory(
                RunnableLambda(self._turn, name="stock_agent_turn"),
                history_factory,
                input_messages_key="input",
                history_messages_key="history",
                history_factory_config=[
                    ConfigurableFieldSpec(
                        id="user_id", annotation=str, name="User id", default="", is_shared=True
                    ),
                    ConfigurableFieldSpec(
                        id="session_id",
                        annotation=str,
                        name="Session id",
                        default="",
                        is_shared=True,
                    ),
                ],
            )

    def _messages(
        self, profile: Profile, history: Sequence[BaseMessage], text: str
    ) -> list[BaseMessage]:
        return [SystemMessage(system_prompt(profile, self.today())), *history, HumanMessage(text)]

    def _turn(self, inputs: dict[str, Any], config: RunnableConfig) -> AIMessage:
        history: SessionHistory | None = config.get("configurable", {}).get("message_history")
        fields = history.profile_fields if history is not None else None
        profile = ProfileStore.from_hash(fields or {})
        messages = self._messages(profile, inputs.get("history", []), inputs["input"])
        result = self.graph.invoke({"messages": messages}, config=config)
        return final_answer(result["messages"])

    def _run(self, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except StockAgentError:
            raise
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            explained = self.explain_error(exc) if self.explain_error else None
            if explained is not None:
                raise explained from exc
            raise

    def ask(
        self,
        text: str,
        *,
        user_id: str,
        session_id: str,
        callbacks: list[BaseCallbackHandler] | None = None,
    ) -> str:
        """One remembered turn: the model sees the session's window and the user's profile."""
        config: RunnableConfig = {
            "configurable": {"user_id": user_id, "session_id": session_id},
            "callbacks": callbacks or [],
            "recursion_limit": RECURSION_LIMIT,
        }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            answer = self._run(lambda: self.runnable.invoke({"input": text}, config=config))
        return answer.text if isinstance(answer, BaseMessage) else str(answer)

    def run_once(
        self, text: str, *, profile: Profile, callbacks: list[BaseCallbackHandler] | None = None
    ) -> str:
        """A turn with no memory (nothing is read or saved)."""
        config: RunnableConfig = {"callbacks": callbacks or [], "recursion_limit": RECURSION_LIMIT}
        messages = self._messages(profile, [], text)
        result = self._run(lambda: self.graph.invoke({"messages": messages}, config=config))
        return final_answer(result["messages"]).text
