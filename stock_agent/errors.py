"""User-facing errors: each says what went wrong and how to fix it.

The CLI turns any `StockAgentError` into one line on stderr and its `exit_code`.
"""

from __future__ import annotations


class StockAgentError(Exception):
    """Base class: `message` says what happened, `fix` what to do about it."""

    exit_code = 1

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.message} ({self.fix})" if self.fix else self.message

    def one_line(self) -> str:
        return f"error: {self}"


class ConfigError(StockAgentError):
    """A setting has a value the app cannot use."""

    exit_code = 2


class InvalidInput(StockAgentError):
    """A value given by the user (id, symbol, profile field) is not valid. Nothing was changed."""

    exit_code = 2


class InvalidId(InvalidInput):
    """A user, session or agent id outside `[A-Za-z0-9_.@-]{1,64}`."""


class InvalidSymbol(InvalidInput):
    """A ticker symbol that cannot be one."""


class StoreUnavailable(StockAgentError):
    """Redis (or the embedded Valkey) cannot be reached."""

    exit_code = 3


class UnknownSymbol(StockAgentError):
    """The data source has no data for the symbol."""

    exit_code = 4

    def __init__(self, symbol: str, detail: str | None = None) -> None:
        super().__init__(
            f"unknown symbol {symbol}" + (f": {detail}" if detail else ""),
            fix="check the ticker (e.g. AAPL, BRK-B, ^GSPC)",
        )
        self.symbol = symbol


class DataUnavailable(StockAgentError):
    """The data source cannot provide this kind of data (e.g. news when offline)."""

    exit_code = 4


class RateLimited(StockAgentError):
    """The data source keeps refusing requests."""

    exit_code = 5

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(
            "rate limited by Yahoo Finance, try again in a minute"
            + (f" ({detail})" if detail else ""),
            fix=None,
        )


class DataSourceError(StockAgentError):
    """The data source failed for another reason (network down, bad file)."""

    exit_code = 5


class ModelNotConfigured(StockAgentError):
    """No API key or base URL for the model."""

    exit_code = 6

    def __init__(self) -> None:
        super().__init__(
            "no model configured",
            fix="set OPENAI_API_KEY (and OPENAI_BASE_URL for an OpenAI-compatible server such as "
            "Ollama or vLLM); `stock-agent analyze` works without one",
        )


class ModelUnavailable(StockAgentError):
    """The model server cannot be reached, or refuses the request or the key."""

    exit_code = 6
