"""stock-agent: a terminal stock-analysis assistant with its memory in Redis."""

__version__ = "0.1.0"
