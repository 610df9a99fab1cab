"""Market data (yfinance, offline CSV), indicators and analysis (pure functions)."""
