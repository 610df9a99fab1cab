"""The core: typed domain models, pure indicators and analysis, the number rules and the limits.

Nothing here does I/O or imports the store, the agent, the UI or LangChain. `models`,
`numbers`, `limits`, `symbols` and `profile` are light (stdlib only); `indicators` and
`analysis` use numpy and pandas and are imported only when something is computed.
"""
