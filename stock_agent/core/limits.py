"""Every limit and fixed window of the app, in one place: other modules import them from here."""

from __future__ import annotations

# Ids (user, session, agent): letters, digits and `_ . @ -`, 1 to 64 characters.
ID_PATTERN = r"[A-Za-z0-9_.@-]{1,64}"
MAX_ID_LENGTH = 64

# Ticker symbols: letters, digits and `. - ^ =`, 1 to 15 characters.
MAX_SYMBOL_LENGTH = 15

# Symbols per request: one tool call, one `analyze` command, one profile watchlist.
MAX_SYMBOLS_PER_TOOL_CALL = 10
MAX_SYMBOLS_PER_ANALYZE = 20
MAX_PREFERRED_SYMBOLS = 50

# News headlines: what a tool may ask for, and what the service (and the cache) accepts.
MAX_NEWS_PER_TOOL_CALL = 10
MAX_NEWS = 20

# Profile: the fields a user can set, and the free-text note's length.
PROFILE_FIELDS = ("preferred_symbols", "alert_threshold", "portfolio_size", "notes")
# What `profile set` accepts: the agent's fields plus the currency of portfolio_size (the
# agent is not offered the currency, so its tool schema stays small).
SETTABLE_PROFILE_FIELDS = (*PROFILE_FIELDS, "currency")
DEFAULT_CURRENCY = "USD"
# A portfolio_size above this is a typo, not a portfolio.
MAX_PORTFOLIO_SIZE = 1e15
MAX_NOTES = 2000
# A note the model proposes (it enters every later system prompt, so it stays short).
MAX_NOTES_FROM_MODEL = 300
# Characters of the profile's notes the system prompt carries (the rest stays in the profile).
MAX_NOTES_IN_PROMPT = 600

# Market data: calendar days of daily bars fetched for an analysis (enough for a 200-day SMA
# and a year of returns), and trading days in a year.
HISTORY_DAYS = 800
TRADING_DAYS_PER_YEAR = 252

# What one tool result may cost the model, per symbol.
MAX_TOOL_CHARS_PER_SYMBOL = 1500
