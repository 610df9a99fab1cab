"""The service layer: what the app does for a user, with no LangChain and no terminal in it.

`market` (cached market data), `analysis` (analyse for a user, compare, watchlist) and
`profiles` (validated profile changes). The CLI, the chat tools, the MCP server and the watch
mode all call these, so a rule lives here once.
"""
