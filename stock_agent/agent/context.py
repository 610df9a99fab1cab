"""Who a tool call is for: the per-call context of the one agent that serves every user.

The agent graph is built once (`create_agent(..., context_schema=AgentContext)`) and each
turn passes `context=AgentContext(user_id, session_id, ...)`; tools read it from their
runtime with `current_context()`. Code that calls a tool directly (tests, other front ends)
sets it with `with agent_context(ctx): ...`. Nothing user-specific is bound at build time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING

from stock_agent.errors import StockAgentError

if TYPE_CHECKING:
    from stock_agent.services.market import FetchEvent
    from stock_agent.services.profiles import ProfileUpdate

# Asked before a profile change the model proposes is saved: True saves it. Without one, the
# change is refused (text from data or a model never writes memory without the user's yes).
ConfirmChange = Callable[["ProfileUpdate"], bool]


@dataclass(frozen=True)
class AgentContext:
    """The user (and session) of one turn, where to report fetches (e.g. the chat's status
    line), and how to ask the user to confirm a profile change. `user_id` is None for a turn
    with no user (no profile is read or written)."""

    user_id: str | None
    session_id: str | None = None
    on_fetch: Callable[[FetchEvent], None] | None = None
    confirm: ConfirmChange | None = None


def always_confirm(change: ProfileUpdate) -> bool:
    """For callers that already have the user's consent (e.g. `chat --allow-profile-writes`)."""
    return True


_DIRECT: ContextVar[AgentContext | None] = ContextVar("stock_agent_context", default=None)


@contextmanager
def agent_context(ctx: AgentContext) -> Iterator[AgentContext]:
    """Run direct tool calls as `ctx.user_id` (inside a graph run the runtime's context wins)."""
    token = _DIRECT.set(ctx)
    try:
        yield ctx
    finally:
        _DIRECT.reset(token)


def current_context() -> AgentContext:
    """The context of the running tool call: the graph runtime's, else `agent_context`'s,
    else one with no user."""
    try:
        from langgraph.runtime import get_runtime

        runtime = get_runtime(AgentContext)
        found = getattr(runtime, "context", None)
    except RuntimeError:  # outside any runnable
        found = None
    if isinstance(found, AgentContext):
        return found
    return _DIRECT.get() or AgentContext(user_id=None)


def require_user(ctx: AgentContext) -> str:
    if not ctx.user_id:
        raise StockAgentError(
            "this tool needs a user, and the call has none",
            fix="pass user_id when asking the agent",
        )
    return ctx.user_id
