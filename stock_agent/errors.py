"""User-facing errors: each says what went wrong and how to fix it, and which `ExitStatus` the
CLI exits with. The CLI's one error boundary (`cli.main`) turns any of them into one line.
"""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    """The exit codes of `stock-agent` (documented in the README)."""

    OK = 0
    ERROR = 1  # something failed (a check in `doctor`, an unexpected error)
    USAGE = 2  # bad input or configuration: nothing was changed
    STORE = 3  # Redis (or the embedded Valkey) unavailable
    DATA = 4  # unknown symbol, or data the source cannot provide
    DATA_SOURCE = 5  # the data source failed (rate limited, network down, bad file)
    MODEL = 6  # no model configured, or the model server failed
    INTERRUPTED = 130  # Ctrl-C


class StockAgentError(Exception):
    """Base class: `message` says what happened, `fix` what to do about it."""

    exit_code: ExitStatus = ExitStatus.ERROR

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

    exit_code = ExitStatus.USAGE


class InvalidInput(StockAgentError):
    """A value given by the user (id, symbol, profile field) is not valid. Nothing was changed."""

    exit_code = ExitStatus.USAGE


class InvalidId(InvalidInput):
    """A user, session or agent id outside `[A-Za-z0-9_.@-]{1,64}`."""


class InvalidSymbol(InvalidInput):
    """A ticker symbol that cannot be one."""


class StoreUnavailable(StockAgentError):
    """Redis (or the embedded Valkey) cannot be reached."""

    exit_code = ExitStatus.STORE


class UnknownSymbol(StockAgentError):
    """The data source has no data for the symbol."""

    exit_code = ExitStatus.DATA

    def __init__(self, symbol: str, detail: str | None = None) -> None:
        super().__init__(
            f"unknown symbol {symbol}" + (f": {detail}" if detail else ""),
            fix="check the ticker (e.g. AAPL, BRK-B, ^GSPC)",
        )
        self.symbol = symbol


class DataUnavailable(StockAgentError):
    """The data source cannot provide this kind of data (e.g. news when offline)."""

    exit_code = ExitStatus.DATA


class RateLimited(StockAgentError):
    """The data source keeps refusing requests."""

    exit_code = ExitStatus.DATA_SOURCE

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(
            "rate limited by Yahoo Finance, try again in a minute"
            + (f" ({detail})" if detail else ""),
            fix=None,
        )


class DataSourceError(StockAgentError):
    """The data source failed for another reason (network down, bad file)."""

    exit_code = ExitStatus.DATA_SOURCE


class ModelNotConfigured(StockAgentError):
    """No API key or base URL for the model."""

    exit_code = ExitStatus.MODEL

    def __init__(self) -> None:
        super().__init__(
            "no model configured",
            fix="set OPENAI_API_KEY (and OPENAI_BASE_URL for an OpenAI-compatible server such as "
            "Ollama or vLLM); `stock-agent analyze` works without one",
        )


class ModelUnavailable(StockAgentError):
    """The model server cannot be reached, or refuses the request or the key."""

    exit_code = ExitStatus.MODEL
