"""stock-agent: a terminal stock-analysis assistant with its memory in Redis.

The public Python API is `App` (see `stock_agent.app`) and the typed models in
`stock_agent.core.models`; `App` is imported on first use so `stock-agent --help` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["App", "__version__"]

if TYPE_CHECKING:
    from stock_agent.app import App


def __getattr__(name: str) -> Any:
    if name == "App":
        from stock_agent.app import App

        return App
    raise AttributeError(f"module 'stock_agent' has no attribute {name!r}")
