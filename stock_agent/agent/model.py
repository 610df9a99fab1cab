"""The chat model: `ChatOpenAI` for OpenAI or any OpenAI-compatible server (Ollama, vLLM,
LM Studio), or another LangChain provider through a `provider:model` name."""

from __future__ import annotations

from typing import TYPE_CHECKING

from stock_agent.errors import ModelNotConfigured, ModelUnavailable
from stock_agent.sanitize import scrub_secrets, strip_control_line

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from stock_agent.config import Settings


def build_model(settings: Settings) -> BaseChatModel:
    """The configured model, streaming. Raises ModelNotConfigured without a key or base URL."""
    name = settings.model
    provider, _, bare = name.partition(":")
    if bare and provider not in ("openai",):
        # Another LangChain provider (e.g. `anthropic:claude-...`), if its package is installed.
        from langchain.chat_models import init_chat_model

        try:
            return init_chat_model(name, streaming=True)
        except ImportError as exc:
            raise ModelUnavailable(
                f"the provider package for {name!r} is not installed: {exc}",
                fix=f"pip install langchain-{provider}, or use an OpenAI-compatible model",
            ) from exc
    if not settings.model_configured:
        raise ModelNotConfigured()
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(
        model=bare or name,
        # A local server (Ollama, vLLM) needs no key, but the client insists on one.
        api_key=settings.openai_api_key or "not-needed",  # type: ignore[arg-type]
        base_url=settings.openai_base_url,
        streaming=True,
        stream_usage=True,
        # Some model names would silently switch to the Responses API, which most
        # OpenAI-compatible servers do not have: stay on chat completions.
        use_responses_api=False,
        max_retries=2,
        timeout=90,
    )


def explain_model_error(exc: BaseException, settings: Settings) -> ModelUnavailable | None:
    """Turn an OpenAI client error into one actionable line (None if it is not one)."""
    try:
        import openai
    except ImportError:  # pragma: no cover - langchain-openai depends on it
        return None
    where = scrub_secrets(settings.openai_base_url or "api.openai.com")
    if isinstance(exc, openai.AuthenticationError):
        return ModelUnavailable(
            f"the model server at {where} refused the API key",
            fix="check OPENAI_API_KEY (it is not printed)",
        )
    if isinstance(exc, openai.APIConnectionError):
        return ModelUnavailable(
            f"cannot reach the model server at {where}",
            fix="check OPENAI_BASE_URL and that the server is running; `stock-agent analyze --no-llm` works offline",
        )
    if isinstance(exc, openai.NotFoundError):
        return ModelUnavailable(
            f"the model server at {where} does not know model {settings.model!r}",
            fix="set STOCK_AGENT_MODEL to a model it serves",
        )
    if isinstance(exc, openai.RateLimitError):
        return ModelUnavailable(
            f"the model server at {where} is rate limiting requests", fix="try again shortly"
        )
    if isinstance(exc, openai.APIStatusError):
        # Whatever the status, a server may echo the request (and the key) in its reply.
        message = scrub_secrets(
            strip_control_line(str(getattr(exc, "message", exc))), [settings.openai_api_key]
        )
        if len(message) > 300:
            message = message[:297] + "..."
        return ModelUnavailable(
            f"the model server at {where} refused the request ({exc.status_code}): {message}"
        )
    return None
