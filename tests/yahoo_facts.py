"""The fake Yahoo of tests/yahoo_http.py, answering also what `fundamentals` and `news` ask: the
quoteSummary modules and the v7 quote that `Ticker.info` merges, the timeseries it asks for
`trailingPegRatio`, and the news stream (`POST /xhr/ncp`) that `Ticker.news` reads, each in
Yahoo's own shape (`formatted=false`: plain numbers), so the real yfinance parses them.

`use_fake_yahoo(cache_dir)` makes the yfinance provider of this process use such a session:
for a `stock-agent` subprocess started through a `-c` wrapper (see test_mcp_server.py).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.yahoo_http import MARKET_DATA, FakeResponse, FakeYahooSession, Request, fresh_yfinance

# What Yahoo sends for AAPL (values of late 2026, as plain numbers). `Ticker.info` flattens the
# modules in this order, then the v7 quote over them: its dividendYield is in percent (0.44),
# which is why the provider divides by 100.
QUOTE_SUMMARY: dict[str, dict[str, Any]] = {
    "AAPL": {
        "assetProfile": {
            "address1": "One Apple Park Way",
            "city": "Cupertino",
            "country": "United States",
            "website": "https://www.apple.com",
            "industry": "Consumer Electronics",
            "industryKey": "consumer-electronics",
            "sector": "Technology",
            "sectorKey": "technology",
            "fullTimeEmployees": 164000,
            "companyOfficers": [
                {"maxAge": 1, "name": "Mr. Timothy D. Cook", "title": "CEO & Director"}
            ],
            "maxAge": 86400,
        },
        "summaryDetail": {
            "maxAge": 1,
            "priceHint": 2,
            "previousClose": 224.8,
            "dividendRate": 1.0,
            "dividendYield": 0.0044,
            "payoutRatio": 0.1509,
            "beta": 1.24,
            "trailingPE": 34.27,
            "forwardPE": 28.96,
            "marketCap": 3412000000000,
            "fiftyTwoWeekLow": 164.08,
            "fiftyTwoWeekHigh": 260.1,
            "currency": "USD",
            "fromCurrency": None,
            "tradeable": False,
        },
        "defaultKeyStatistics": {
            "maxAge": 1,
            "priceHint": 2,
            "profitMargins": 0.2397,
            "beta": 1.24,
            "bookValue": 4.335,
            "priceToBook": 52.1,
            "trailingEps": 6.59,
            "forwardEps": 7.8,
            "lastSplitFactor": "4:1",
        },
        "quoteType": {
            "exchange": "NMS",
            "quoteType": "EQUITY",
            "symbol": "AAPL",
            "underlyingSymbol": "AAPL",
            "shortName": "Apple Inc.",
            "longName": "Apple Inc.",
            "timeZoneFullName": "America/New_York",
            "maxAge": 1,
        },
        "financialData": {
            "maxAge": 86400,
            "currentPrice": 225.87,
            "totalRevenue": 391035000000,
            "profitMargins": 0.2397,
            "recommendationKey": "buy",
            "financialCurrency": "USD",
        },
    }
}

QUOTE: dict[str, dict[str, Any]] = {
    "AAPL": {
        "language": "en-US",
        "region": "US",
        "quoteType": "EQUITY",
        "typeDisp": "Equity",
        "currency": "USD",
        "exchange": "NMS",
        "shortName": "Apple Inc.",
        "longName": "Apple Inc.",
        "marketState": "CLOSED",
        "regularMarketPrice": 225.87,
        "regularMarketPreviousClose": 224.8,
        "marketCap": 3412000000000,
        "trailingPE": 34.27,
        "forwardPE": 28.96,
        "priceToBook": 52.1,
        "dividendYield": 0.44,
        "epsTrailingTwelveMonths": 6.59,
        "epsForward": 7.8,
        "fiftyTwoWeekHigh": 260.1,
        "fiftyTwoWeekLow": 164.08,
        "fullExchangeName": "NasdaqGS",
        "symbol": "AAPL",
    }
}

# The news stream: stories nested under "content", an advert among them (yfinance drops it).
STREAM: dict[str, list[dict[str, Any]]] = {
    "AAPL": [
        {
            "id": "0a1b",
            "content": {
                "id": "0a1b",
                "contentType": "STORY",
                "title": "Apple unveils a thing",
                "summary": "Apple said on Thursday...",
                "pubDate": "2026-11-20T14:30:00Z",
                "displayTime": "2026-11-20T15:02:11Z",
                "provider": {"displayName": "Reuters", "url": "http://www.reuters.com/"},
                "canonicalUrl": {
                    "url": "https://finance.yahoo.com/news/apple-thing.html",
                    "site": "finance",
                    "region": "US",
                    "lang": "en-US",
                },
                "clickThroughUrl": {"url": "https://finance.yahoo.com/news/apple-thing.html"},
                "metadata": {"editorsPick": False},
            },
        },
        {
            "id": "ad-1",
            "ad": [{"id": "ad-1"}],
            "content": {"title": "Sponsored: a broker", "contentType": "AD"},
        },
        {
            "id": "2c3d",
            "content": {
                "id": "2c3d",
                "contentType": "VIDEO",
                "title": "Markets wrap",
                "pubDate": "2026-11-19T21:00:00Z",
                "provider": {"displayName": "Yahoo Finance Video"},
                "canonicalUrl": {"url": "https://finance.yahoo.com/video/markets-wrap.html"},
                "clickThroughUrl": None,
            },
        },
        {
            "id": "4e5f",
            "content": {
                "id": "4e5f",
                "contentType": "STORY",
                "title": "Apple suppliers\nramp up\tahead of the holidays",
                "pubDate": "2026-11-18T09:15:00Z",
                "provider": {"displayName": "Bloomberg"},
                "canonicalUrl": {"url": "https://finance.yahoo.com/news/suppliers.html"},
            },
        },
    ]
}


class FakeYahooWithFacts(FakeYahooSession):
    """FakeYahooSession that also serves company facts and headlines for the symbols in
    QUOTE_SUMMARY and STREAM ("Quote not found" for the others, and no headlines)."""

    def __init__(self, data_dir: Path = MARKET_DATA, **kwargs: Any) -> None:
        super().__init__(data_dir, **kwargs)
        self._body = threading.local()  # the JSON body of the request being answered

    def send(self, method: Any, url: str, *args: Any, **kwargs: Any) -> FakeResponse:
        self._body.value = kwargs.get("json")
        return super().send(method, url, *args, **kwargs)

    def answer(self, request: Request) -> FakeResponse:
        path = urlsplit(request.url).path
        symbol = path.rsplit("/", 1)[-1]
        if "/v10/finance/quoteSummary/" in path:
            return self._summary(symbol, request)
        if path.endswith("/v7/finance/quote"):
            found = QUOTE.get(str(request.params.get("symbols", "")))
            result = [found] if found else []
            return FakeResponse(
                200, {"quoteResponse": {"result": result, "error": None}}, request.url
            )
        if "/ws/fundamentals-timeseries/" in path:
            return self._peg(symbol, request)
        if path == "/xhr/ncp":
            body = getattr(self._body, "value", None) or {}
            symbols = body.get("serviceConfig", {}).get("s", [])
            stream = [story for s in symbols for story in STREAM.get(s, [])]
            return FakeResponse(
                200,
                {"data": {"tickerStream": {"stream": stream, "nextPage": False}}, "status": "OK"},
                request.url,
            )
        return super().answer(request)

    def _summary(self, symbol: str, request: Request) -> FakeResponse:
        modules = QUOTE_SUMMARY.get(symbol)
        if modules is None:
            return FakeResponse(
                404,
                {
                    "quoteSummary": {
                        "result": None,
                        "error": {
                            "code": "Not Found",
                            "description": f"Quote not found for symbol: {symbol}",
                        },
                    }
                },
                request.url,
            )
        asked = str(request.params.get("modules", "")).split(",")
        result = {name: value for name, value in modules.items() if name in asked}
        return FakeResponse(200, {"quoteSummary": {"result": [result], "error": None}}, request.url)

    def _peg(self, symbol: str, request: Request) -> FakeResponse:
        result: list[dict[str, Any]] = [
            {"meta": {"symbol": [symbol], "type": ["trailingPegRatio"]}, "timestamp": []}
        ]
        if symbol in QUOTE_SUMMARY:
            result[0]["timestamp"] = [1790726400]
            result[0]["trailingPegRatio"] = [
                {
                    "dataId": 14021,
                    "asOfDate": "2026-09-30",
                    "periodType": "TTM",
                    "currencyCode": "USD",
                    "reportedValue": {"raw": 2.1385, "fmt": "2.14"},
                }
            ]
        return FakeResponse(200, {"timeseries": {"result": result, "error": None}}, request.url)


def use_fake_yahoo(cache_dir: Path) -> None:
    """Make this process's yfinance provider ask FakeYahooWithFacts instead of the network
    (yfinance's own caches in `cache_dir`). Call it before the CLI runs."""
    from stock_agent import providers
    from stock_agent.providers.yahoo import YFinanceProvider

    fresh_yfinance(cache_dir)
    session = FakeYahooWithFacts()
    providers.register(
        YFinanceProvider.name,
        lambda settings: YFinanceProvider(timeout=settings.timeout, session=session),
        replace=True,
    )
