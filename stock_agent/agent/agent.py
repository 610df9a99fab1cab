"""The agent with its memory: one LangChain 1.x `create_agent` graph for every user, wrapped in
`RunnableWithMessageHistory` over the Redis `SessionHistory`.

This is the only module that knows about `RunnableWithMessageHistory` (deprecated in
langchain-core 1.x, removed in 2.0): a later move to LangGraph persistence touches this file.

One graph, any user: the user and session arrive per call as the runtime context
(`create_agent(..., context_schema=AgentContext)`, `graph.invoke(..., context=...)`), and the
tools read it from their runtime. Nothing user-specific is bound when the graph is built.

Memory, explicitly: a turn reads its memory once (`SessionStore.read_turn`: the window of
messages and the profile, one round trip) and writes it once after the answer
(`SessionStore.save_turn`, one script call), where a failure can be seen. The wrapper gets
that history preloaded, so its end-of-run callback (whose errors LangChain swallows) only
collects the turn's messages. The wrapper wraps a small turn function: its input is the
user's text, its history arrives as a list, its output is the final answer as one
`AIMessage`. The tool-call trail of a turn is not kept: tool results are cached in Redis.

Usage: the answer kept in memory carries what the turn used, summed over its model requests
(`usage_metadata`: tokens in and out; `response_metadata`: the model and the cost in dollars,
None when the model's price is not known). The save script adds it to the session's and the
day's totals in the same call (`store.history`); `on_usage` hands it to the caller.

Async: `aask` and `astream` are `ask` on the event loop. They share its preparation and its
reply handling; the read and the save are awaited on `redis.asyncio`, the model call is the
async OpenAI client, and the tools (sync data fetches) run in LangChain's bounded executor
thread pool, so nothing blocks the loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
import warnings
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import ConfigurableFieldSpec, RunnableConfig, RunnableLambda

from stock_agent.agent.context import AgentContext, ConfirmChange
from stock_agent.agent.prompts import system_prompt
from stock_agent.core.models import Profile
from stock_agent.core.usage import TurnUsage
from stock_agent.errors import StockAgentError

if TYPE_CHECKING:
    from langchain_core.callbacks import BaseCallbackHandler
    from langchain_core.language_models import BaseChatModel
    from langchain_core.tools import BaseTool

    from stock_agent.services.market import Listener
    from stock_agent.store.history import SessionHistory
    from stock_agent.store.sessions import SessionStore, TurnMemory
    from stock_agent.store.turns import TurnSaver

# Model calls plus tool calls in one turn; a loop past this is cut off.
RECURSION_LIMIT = 24


def build_graph(model: BaseChatModel, tools: Sequence[BaseTool]) -> Any:
    """The tool-calling agent, for every user: the user arrives per call as `AgentContext`.
    The system prompt is sent per turn (it carries today's date and the user's profile), so
    the graph itself has none."""
    from langchain.agents import create_agent

    return create_agent(model, list(tools), name="stock_agent", context_schema=AgentContext)


def final_answer(messages: Sequence[BaseMessage], usage: TurnUsage | None = None) -> AIMessage:
    """The last assistant message, as plain text to keep in memory (no tool calls), with the
    turn's `usage` when its requests reported any. Its unique id lets the history recognise
    a retried save."""
    text = ""
    for message in reversed(messages):
        if isinstance(message, AIMessage) and not message.tool_calls:
            text = message.text
            break
    answer = AIMessage(content=text, id=f"answer-{uuid.uuid4().hex}")
    if usage is not None and usage.requests:
        answer.usage_metadata = {
            "input_tokens": usage.tokens_in,
            "output_tokens": usage.tokens_out,
            "total_tokens": usage.tokens_in + usage.tokens_out,
        }
        answer.response_metadata = {"model_name": usage.model, "cost_usd": usage.cost}
    return answer


def answer_usage(answer: BaseMessage, model: str) -> TurnUsage:
    """The usage an answer of `final_answer` carries (no requests counted when it has none)."""
    usage = getattr(answer, "usage_metadata", None)
    if not usage:
        return TurnUsage(model)
    meta = getattr(answer, "response_metadata", None) or {}
    return TurnUsage(
        str(meta.get("model_name") or model),
        int(usage.get("input_tokens", 0)),
        int(usage.get("output_tokens", 0)),
        meta.get("cost_usd"),
        1,
    )


def graph_config(config: RunnableConfig) -> RunnableConfig:
    """The turn's config for the graph, without the wrapper's own listener.

    `RunnableWithMessageHistory` collects the turn's messages with a root-run listener, a
    tracer that needs the turn's own start and end only. Handed down, it would build a traced
    run (a copy of every input and output) for each of the graph's nested runs: about a
    third of a turn's CPU, and with many users at once, time the event loop runs nothing
    else. Every other handler (the caller's callbacks, a LangSmith tracer) is kept."""
    from langchain_core.callbacks.base import BaseCallbackManager
    from langchain_core.tracers.root_listeners import (
        AsyncRootListenersTracer,
        RootListenersTracer,
    )

    listeners = (RootListenersTracer, AsyncRootListenersTracer)
    callbacks = config.get("callbacks")
    if isinstance(callbacks, BaseCallbackManager):
        manager = callbacks.copy()
        for handler in [*manager.handlers, *manager.inheritable_handlers]:
            if isinstance(handler, listeners):
                manager.remove_handler(handler)
        return {**config, "callbacks": manager}
    if isinstance(callbacks, list):
        return {**config, "callbacks": [h for h in callbacks if not isinstance(h, listeners)]}
    return config


def _the_history(history: SessionHistory) -> SessionHistory:
    """The wrapper's history factory: the turn's history is made (and read) by `ChatAgent.ask`."""
    return history


class ChatAgent:
    """The agent, its memory and its prompt. `ask` runs one remembered turn for any user;
    `run_once` runs a turn with no memory (the one-shot `analyze`)."""

    def __init__(
        self,
        graph: Any,
        sessions: SessionStore | None,
        *,
        today: Callable[[], dt.date] = dt.date.today,
        explain_error: Callable[[BaseException], StockAgentError | None] | None = None,
        saver: TurnSaver | None = None,
        model_name: str = "",
        prices: Mapping[str, tuple[float, float]] | None = None,
    ) -> None:
        self.graph = graph
        self.model_name = model_name  # for the turn's usage and its price
        self.prices = prices
        self.sessions = sessions
        # Saves each turn; keeps (and reports) one whose save fails. None: save directly.
        self.saver = saver
        self.today = today
        self.explain_error = explain_error
        from langchain_core.runnables.history import RunnableWithMessageHistory

        with warnings.catch_warnings():
            # Deprecated in langchain-core 1.x; kept deliberately (see the module docstring).
            warnings.simplefilter("ignore")
            self.runnable = RunnableWithMessageHistory(
                RunnableLambda(self._turn, afunc=self._aturn, name="stock_agent_turn"),
                _the_history,
                input_messages_key="input",
                history_messages_key="history",
                history_factory_config=[
                    ConfigurableFieldSpec(
                        id="history", annotation=Any, name="Session history", is_shared=True
                    ),
                ],
            )

    def _messages(
        self, profile: Profile, history: Sequence[BaseMessage], text: str
    ) -> list[BaseMessage]:
        return [SystemMessage(system_prompt(profile, self.today())), *history, HumanMessage(text)]

    def _turn(self, inputs: dict[str, Any], config: RunnableConfig) -> AIMessage:
        messages = self._messages(inputs["profile"], inputs.get("history", []), inputs["input"])
        result = self.graph.invoke(
            {"messages": messages}, config=graph_config(config), context=inputs["context"]
        )
        return self._answer(result["messages"], len(messages))

    async def _aturn(self, inputs: dict[str, Any], config: RunnableConfig) -> AIMessage:
        messages = self._messages(inputs["profile"], inputs.get("history", []), inputs["input"])
        result = await self.graph.ainvoke(
            {"messages": messages}, config=graph_config(config), context=inputs["context"]
        )
        return self._answer(result["messages"], len(messages))

    def _answer(self, messages: Sequence[BaseMessage], sent: int) -> AIMessage:
        """The final answer of a turn whose first `sent` messages were its input, with the
        usage its model requests reported."""
        reported = [
            m.usage_metadata
            for m in messages[sent:]
            if isinstance(m, AIMessage) and m.usage_metadata is not None
        ]
        usage = TurnUsage.of(self.model_name or "unknown", reported, self.prices)
        return final_answer(messages, usage)

    def _explained(self, exc: Exception) -> StockAgentError | None:
        if isinstance(exc, StockAgentError) or self.explain_error is None:
            return None
        return self.explain_error(exc)

    def _run(self, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except Exception as exc:
            explained = self._explained(exc)
            if explained is not None:
                raise explained from exc
            raise

    async def _arun(self, call: Coroutine[Any, Any, Any]) -> Any:
        try:
            return await call
        except Exception as exc:
            explained = self._explained(exc)
            if explained is not None:
                raise explained from exc
            raise

    def _memory(self) -> SessionStore:
        if self.sessions is None:
            raise StockAgentError(
                "this agent has no memory", fix="use run_once, or build it with a session store"
            )
        return self.sessions

    def _prepare(
        self,
        memory: TurnMemory,
        text: str,
        user_id: str,
        session_id: str,
        callbacks: list[BaseCallbackHandler] | None,
        on_fetch: Listener | None,
        confirm: ConfirmChange | None,
    ) -> tuple[dict[str, Any], RunnableConfig]:
        """The turn's inputs and config, from the memory it read (shared by ask and aask)."""
        if self.saver is not None:  # this session's turns still waiting to be saved, in the window
            memory.history.preloaded = self.saver.with_kept(user_id, session_id, memory.messages)
        context = AgentContext(
            user_id=user_id, session_id=session_id, on_fetch=on_fetch, confirm=confirm
        )
        config: RunnableConfig = {
            "configurable": {"history": memory.history},
            "callbacks": callbacks or [],
            "recursion_limit": RECURSION_LIMIT,
        }
        return {"input": text, "profile": memory.profile, "context": context}, config

    def ask(
        self,
        text: str,
        *,
        user_id: str,
        session_id: str,
        callbacks: list[BaseCallbackHandler] | None = None,
        on_fetch: Listener | None = None,
        confirm: ConfirmChange | None = None,
        on_usage: Callable[[TurnUsage], None] | None = None,
    ) -> str:
        """One remembered turn for `user_id`: the model sees the session's window and the
        user's profile; the turn is saved once the answer is complete. A profile change the
        model proposes is saved only when `confirm(change)` says yes (no `confirm`: refused).
        `on_usage(usage)` is told what the turn used once the answer is complete, before the
        save."""
        sessions = self._memory()
        if self.saver is not None:
            self.saver.before_turn()  # turns kept after a failed save go first: this read sees them
        memory = sessions.read_turn(user_id, session_id)  # validates both ids
        inputs, config = self._prepare(
            memory, text, user_id, session_id, callbacks, on_fetch, confirm
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            answer = self._run(lambda: self.runnable.invoke(inputs, config=config))
        reply = answer.text if isinstance(answer, BaseMessage) else str(answer)
        if on_usage is not None:
            on_usage(answer_usage(answer, self.model_name))
        if self.saver is None:
            sessions.save_turn(user_id, session_id, memory.history.pending)
        else:  # a failed save keeps the turn and raises TurnNotSaved, which carries the reply
            self.saver.save(user_id, session_id, memory.history.pending, answer=reply)
        return reply

    async def aask(
        self,
        text: str,
        *,
        user_id: str,
        session_id: str,
        callbacks: list[BaseCallbackHandler] | None = None,
        on_fetch: Listener | None = None,
        confirm: ConfirmChange | None = None,
        on_usage: Callable[[TurnUsage], None] | None = None,
    ) -> str:
        """`ask` on the event loop: the same turn, its read and save awaited on the asyncio
        client. Many users' turns may run at once in one loop."""
        sessions = self._memory()
        if self.saver is not None and self.saver.waiting:  # rare: older turns to write first
            await asyncio.to_thread(self.saver.before_turn)
        memory = await sessions.aread_turn(user_id, session_id)  # validates both ids
        inputs, config = self._prepare(
            memory, text, user_id, session_id, callbacks, on_fetch, confirm
        )
        answer = await self._arun(self.runnable.ainvoke(inputs, config=config))
        reply = answer.text if isinstance(answer, BaseMessage) else str(answer)
        if on_usage is not None:
            on_usage(answer_usage(answer, self.model_name))
        if self.saver is None:
            await sessions.asave_turn(user_id, session_id, memory.history.pending)
        else:
            await self.saver.asave(user_id, session_id, memory.history.pending, answer=reply)
        return reply

    async def astream(
        self,
        text: str,
        *,
        user_id: str,
        session_id: str,
        on_fetch: Listener | None = None,
        confirm: ConfirmChange | None = None,
    ) -> AsyncIterator[str]:
        """`aask` as an async iterator of the answer's text chunks as the model streams them
        (for servers). The turn is saved when the iterator ends; its errors are raised there.
        Leaving the loop early cancels the turn (nothing is saved)."""
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        task = asyncio.ensure_future(
            self.aask(
                text,
                user_id=user_id,
                session_id=session_id,
                on_fetch=on_fetch,
                confirm=confirm,
                callbacks=[_TokenQueue(queue)],
            )  # fmt: skip
        )
        task.add_done_callback(lambda _: queue.put_nowait(None))
        try:
            while (chunk := await queue.get()) is not None:
                yield chunk
            await task  # its error, if any
        finally:
            if not task.done():
                task.cancel()

    def run_once(
        self,
        text: str,
        *,
        profile: Profile,
        user_id: str | None = None,
        callbacks: list[BaseCallbackHandler] | None = None,
        on_fetch: Listener | None = None,
    ) -> str:
        """A turn with no memory (nothing is read or saved)."""
        config: RunnableConfig = {"callbacks": callbacks or [], "recursion_limit": RECURSION_LIMIT}
        messages = self._messages(profile, [], text)
        context = AgentContext(user_id=user_id, on_fetch=on_fetch)
        result = self._run(
            lambda: self.graph.invoke({"messages": messages}, config=config, context=context)
        )
        return final_answer(result["messages"]).text


class _TokenQueue(AsyncCallbackHandler):
    """Puts each streamed text token of the model on a queue (`ChatAgent.astream`)."""

    def __init__(self, queue: asyncio.Queue[str | None]) -> None:
        self.queue = queue

    async def on_llm_new_token(self, token: Any, **kwargs: Any) -> None:
        if isinstance(token, str) and token:  # tool-call chunks carry no text
            self.queue.put_nowait(token)
