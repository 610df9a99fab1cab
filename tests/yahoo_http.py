"""A fake Yahoo Finance behind yfinance's own HTTP session, for tests and benchmarks: the real
yfinance runs (cookie, crumb, time zone and chart requests, its parsing and its logging), and
every request it makes is recorded and answered from the offline CSV files, as Yahoo would.

`FakeYahooSession` is a `DeadlineSession` (the session the provider gives yfinance) whose
`send` answers instead of the network, so the provider's deadlines apply to it unchanged.
`fresh_yfinance(tmp)` points yfinance's on-disk caches (time zones, cookie) at `tmp` and forgets
its per-process state, so each use starts as a new process on a new machine would.
"""

from __future__ import annotations

import http.cookiejar
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pandas as pd

from stock_agent.providers.yahoo import deadline_session_class

MARKET_DATA = Path(__file__).resolve().parent.parent / "examples" / "market"
NEW_YORK = "America/New_York"


@dataclass
class Request:
    method: str
    url: str
    params: dict[str, Any]
    timeout: float | None

    @property
    def kind(self) -> str:
        """cookie, crumb, chart:SYMBOL or other."""
        parts = urlsplit(self.url)
        if parts.hostname == "fc.yahoo.com":
            return "cookie"
        if parts.path.endswith("/getcrumb"):
            return "crumb"
        if "/v8/finance/chart/" in parts.path:
            return "chart:" + parts.path.rsplit("/", 1)[-1]
        return "other"


class FakeResponse:
    def __init__(self, status: int, body: Any, url: str) -> None:
        self.status_code = status
        self.text = body if isinstance(body, str) else json.dumps(body)
        self.content = self.text.encode()
        self.url = url
        self.headers: dict[str, str] = {}

    def json(self) -> Any:
        return json.loads(self.text)

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            from curl_cffi.requests.exceptions import HTTPError

            raise HTTPError(f"HTTP Error {self.status_code}", response=self)


def _base() -> type:
    return deadline_session_class()


class FakeYahooSession(_base()):  # type: ignore[misc]
    """yfinance's session, answering from `data_dir` like Yahoo; `requests` lists every request.

    `behave(request)` may return a FakeResponse or raise (a rate limit, a timeout) instead of
    the normal answer; `hang` makes every request wait that many seconds first (bounded by the
    request's timeout, like a network that never answers)."""

    def __init__(self, data_dir: Path = MARKET_DATA, **kwargs: Any) -> None:
        super().__init__(impersonate="chrome")
        self.data_dir = Path(data_dir)
        self.requests: list[Request] = []
        self.behave: Callable[[Request], FakeResponse | None] | None = kwargs.get("behave")
        self.hang: float = kwargs.get("hang", 0.0)
        self._lock = threading.Lock()

    def kinds(self) -> list[str]:
        with self._lock:
            return [r.kind for r in self.requests]

    def send(self, method: Any, url: str, *args: Any, **kwargs: Any) -> FakeResponse:
        timeout = kwargs.get("timeout")
        request = Request(str(method), url, dict(kwargs.get("params") or {}), timeout)
        with self._lock:
            self.requests.append(request)
        if self.hang:
            limit = self.hang if not isinstance(timeout, int | float) else min(self.hang, timeout)
            time.sleep(limit)
            if isinstance(timeout, int | float) and timeout < self.hang:
                from curl_cffi.requests.exceptions import Timeout

                raise Timeout(
                    f"Failed to perform, curl: (28) Operation timed out after {timeout * 1000:.0f} "
                    "milliseconds with 0 bytes received. See https://curl.se/libcurl/c/"
                    "libcurl-errors.html first for more details."
                )
        if self.behave is not None:
            answer = self.behave(request)
            if answer is not None:
                return answer
        return self.answer(request)

    # -- Yahoo, as it answers --------------------------------------------------------------------

    def answer(self, request: Request) -> FakeResponse:
        kind = request.kind
        if kind == "cookie":
            self._set_cookie()
            return FakeResponse(404, "", request.url)  # fc.yahoo.com: a 404 that sets A3
        if kind == "crumb":
            return FakeResponse(200, "FaKeCrUmB.1", request.url)
        if kind.startswith("chart:"):
            return self._chart(kind.split(":", 1)[1], request)
        return FakeResponse(404, {"error": "not faked"}, request.url)

    def _set_cookie(self) -> None:
        cookie = http.cookiejar.Cookie(
            version=0,
            name="A3",
            value="d=AQABBFAKE&S=AQAAAFAKE",
            port=None,
            port_specified=False,
            domain=".yahoo.com",
            domain_specified=True,
            domain_initial_dot=True,
            path="/",
            path_specified=True,
            secure=True,
            expires=int(time.time()) + 365 * 86_400,
            discard=False,
            comment=None,
            comment_url=None,
            rest={},
        )
        self.cookies.jar.set_cookie(cookie)

    def _chart(self, symbol: str, request: Request) -> FakeResponse:
        path = self.data_dir / f"{symbol}.csv"
        if not path.is_file():
            return FakeResponse(
                404,
                {
                    "chart": {
                        "result": None,
                        "error": {
                            "code": "Not Found",
                            "description": "No data found, symbol may be delisted",
                        },
                    }
                },
                request.url,
            )
        raw = pd.read_csv(path)
        dates = pd.DatetimeIndex(pd.to_datetime(raw["Date"])).tz_localize(NEW_YORK)
        opens = dates + pd.Timedelta(hours=9, minutes=30)
        stamps = opens.tz_convert("UTC").as_unit("s").asi8.astype(int)
        params = request.params
        keep = pd.Series(True, index=range(len(raw)))
        if "period1" in params:
            start = int(params["period1"])
            end = int(params.get("period2") or 2**40)
            keep = pd.Series((stamps >= start) & (stamps < end))
        elif params.get("range") in ("1d", "5d"):
            count = 1 if params["range"] == "1d" else 5
            keep = pd.Series([i >= len(raw) - count for i in range(len(raw))])
        rows = raw[keep.to_numpy()]
        times = stamps[keep.to_numpy()]
        last_close = float(raw["Close"].iloc[-1])
        market_time = int(stamps[-1]) + int(6.5 * 3600)  # the last session's close

        def period(start: int, end: int) -> dict[str, Any]:
            return {"timezone": "EST", "start": start, "end": end, "gmtoffset": -18000}

        opens_at = int(stamps[-1])
        trading = {
            "pre": period(opens_at - int(5.5 * 3600), opens_at),
            "regular": period(opens_at, market_time),
            "post": period(market_time, market_time + 4 * 3600),
        }
        meta = {
            "currency": "USD",
            "symbol": symbol,
            "exchangeName": "NMS",
            "fullExchangeName": "NasdaqGS",
            "instrumentType": "ETF" if symbol == "SPY" else "EQUITY",
            "firstTradeDate": int(stamps[0]),
            "regularMarketTime": market_time,
            "hasPrePostMarketData": True,
            "gmtoffset": -18000,
            "timezone": "EST",
            "exchangeTimezoneName": NEW_YORK,
            "regularMarketPrice": last_close,
            "chartPreviousClose": float(raw["Close"].iloc[-2]) if len(raw) > 1 else last_close,
            "priceHint": 2,
            "currentTradingPeriod": trading,
            "dataGranularity": request.params.get("interval", "1d"),
            "range": params.get("range", ""),
            "validRanges": ["1d", "5d", "1mo", "3mo", "6mo", "1y", "2y", "5y", "10y", "ytd", "max"],
        }
        result = {
            "meta": meta,
            "timestamp": [int(t) for t in times],
            "indicators": {
                "quote": [
                    {
                        "open": rows["Open"].astype(float).tolist(),
                        "high": rows["High"].astype(float).tolist(),
                        "low": rows["Low"].astype(float).tolist(),
                        "close": rows["Close"].astype(float).tolist(),
                        "volume": rows["Volume"].astype(int).tolist(),
                    }
                ],
                "adjclose": [{"adjclose": rows["Adj Close"].astype(float).tolist()}],
            },
        }
        return FakeResponse(200, {"chart": {"result": [result], "error": None}}, request.url)


def fresh_yfinance(cache_dir: Path) -> None:
    """yfinance as in a new process on a new machine: its time-zone and cookie caches in
    `cache_dir` (never the user's), its shared data object, cookie and crumb forgotten."""
    import yfinance
    from yfinance import cache, data

    cache_dir.mkdir(parents=True, exist_ok=True)
    yfinance.set_tz_cache_location(str(cache_dir))
    cache._TzCacheManager._tz_cache = None
    cache._CookieCacheManager._Cookie_cache = None
    data.SingletonMeta._instances.pop(data.YfData, None)
