"""3. The execution cache: `ExecutionCache.get_or_fetch` on the project's pooled client.

- hit: the latency of a lookup whose value is stored (a ~2 KB analysis-shaped JSON value);
- miss: the same call when the value is not stored and the provider takes 300 ms (the
  baseline: without a cache every call is a provider call);
- single flight: ten threads ask for the same missing value at the same moment; the provider
  call count is the result (without a cache it would be ten).
A bare PING on the same pool is measured too, as the floor a hit cannot go below.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from bench.common import MARKET_DATA, Context, Result, Row, Stat, met_if

GROUP = "3. execution cache"
PROVIDER_SECONDS = 0.3
CONCURRENT = 10
INDICATORS = (
    "rsi_14", "macd", "macd_signal", "macd_hist", "sma_20", "sma_50", "sma_200", "ema_12",
    "ema_26", "bb_upper", "bb_middle", "bb_lower", "atr_14", "volatility_20d", "volatility_1y",
    "max_drawdown_1y", "beta",
)  # fmt: skip


def analysis_like(symbol: str) -> dict[str, Any]:
    """A value of the size and shape of a real cached analysis (floats at full precision)."""
    indicators = {name: 100 + i * 1.2345678901234 for i, name in enumerate(INDICATORS)}
    return {
        "symbol": symbol,
        "as_of": "2025-05-30",
        "price": 196.40000000000001,
        "returns": {
            k: 0.0123456789 * (i + 1)
            for i, k in enumerate(("1d", "1w", "1m", "3m", "6m", "1y", "ytd"))
        },
        "indicators": indicators,
        "signals": [
            {"name": name, "state": "neutral", "text": f"{name} is within its usual range " * 2}
            for name in ("rsi", "macd", "trend", "bollinger", "volume")
        ],
        "high_52w": 199.62,
        "low_52w": 164.08,
        "notes": ["synthetic value for the cache benchmark"],
    }


class SlowProvider:
    def __init__(self, seconds: float = PROVIDER_SECONDS) -> None:
        self.seconds = seconds
        self.calls = 0
        self._lock = threading.Lock()

    def fetch(self, symbol: str) -> dict[str, Any]:
        with self._lock:
            self.calls += 1
        time.sleep(self.seconds)
        return analysis_like(symbol)


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def run(ctx: Context) -> Result:
    from stock_agent.config import CacheTTLs
    from stock_agent.store.cache import ExecutionCache
    from stock_agent.store.connection import make_client
    from stock_agent.store.keys import KeySpace

    sizes = ctx.sizes
    client = make_client(ctx.server.url)
    keys = KeySpace("bench_cache")
    cache = ExecutionCache(client, keys, CacheTTLs())
    provider = SlowProvider()
    run_id = uuid.uuid4().hex[:8]

    def lookup(symbol: str) -> tuple[Any, bool]:
        return cache.get_or_fetch(
            "analysis", {"symbol": symbol, "run": run_id}, lambda: provider.fetch(symbol), "bars"
        )

    # misses (each a new symbol), then the hits of one stored symbol
    misses = []
    for i in range(sizes.cache_misses):
        started = time.perf_counter()
        _, cached = lookup(f"MISS{i}")
        misses.append(_ms(started))
        if cached:
            raise RuntimeError("a first lookup came back as a hit")
    lookup("AAPL")
    for _ in range(50):  # warm-up: pool connected, code paths hot
        lookup("AAPL")
        client.ping()
    hits, pings = [], []
    for i in range(sizes.cache_hits):
        started = time.perf_counter()
        value, cached = lookup("AAPL")
        hits.append(_ms(started))
        if not cached or value["symbol"] != "AAPL":
            raise RuntimeError("a stored value was not served from the cache")
        if i % 4 == 0:
            started = time.perf_counter()
            client.ping()
            pings.append(_ms(started))

    # single flight: CONCURRENT identical misses at once
    calls, walls, waits = [], [], []
    for trial in range(sizes.cache_concurrent_trials):
        symbol = f"SF{trial}"
        before = provider.calls
        barrier = threading.Barrier(CONCURRENT + 1)
        latencies: list[float] = []
        errors: list[BaseException] = []
        lock = threading.Lock()

        def worker(
            sym: str = symbol,
            gate: threading.Barrier = barrier,
            done: list[float] = latencies,
            failed: list[BaseException] = errors,
            guard: threading.Lock = lock,
        ) -> None:
            gate.wait()
            started = time.perf_counter()
            try:
                value, _ = lookup(sym)
                if value["symbol"] != sym:
                    raise RuntimeError(f"got {value['symbol']} for {sym}")
            except BaseException as exc:  # reported below, after the join
                with guard:
                    failed.append(exc)
                return
            with guard:
                done.append(_ms(started))

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(CONCURRENT)]
        for thread in threads:
            thread.start()
        barrier.wait()
        started = time.perf_counter()
        for thread in threads:
            thread.join(30)
        walls.append(_ms(started))
        if errors:
            raise RuntimeError(f"a concurrent lookup failed: {errors[0]!r}")
        calls.append(provider.calls - before)
        waits.extend(latencies)

    analysis_hit = _analysis_hit(ctx, client, sizes.cache_hits // 3)
    client.close()

    hit, miss = Stat.of(hits), Stat.of(misses)
    call_stat = Stat.of(calls)
    result = Result("cache")
    result.rows = [
        Row(GROUP, "hit latency (baseline: no cache, a 300 ms provider call)", "ms", hit, miss,
            "< 1 ms", met_if(hit, lambda v: v < 1), f"p90 {hit.p90:.3f} ms"),
        Row(GROUP, "loopback PING on the same pool (floor)", "ms", Stat.of(pings)),
        Row(GROUP, f"provider calls for {CONCURRENT} concurrent identical misses", "", call_stat,
            CONCURRENT, "1", call_stat.max == 1, f"{len(calls)} trials"),
        Row(GROUP, f"latency of each of the {CONCURRENT} concurrent misses", "ms", Stat.of(waits),
            miss),
    ]  # fmt: skip
    if analysis_hit is not None:
        result.rows.insert(
            2,
            Row(GROUP, "hit of a real analysis through MarketService", "ms", analysis_hit[0],
                note=f"{analysis_hit[1]:,} bytes stored"),
        )  # fmt: skip
    result.details = {
        "provider_seconds": PROVIDER_SECONDS,
        "value_bytes": len(__import__("json").dumps({"ok": analysis_like("AAPL")})),
        "hits_ms": hit.to_dict(),
        "misses_ms": miss.to_dict(),
        "concurrent_provider_calls": calls,
        "concurrent_wall_ms": Stat.of(walls).to_dict(),
    }
    return result


def _analysis_hit(ctx: Context, client: Any, samples: int) -> tuple[Stat, int] | None:
    """Hits of `MarketService.analysis` for a real symbol from the offline data, if the market
    modules are there (what a tool call pays when the analysis is cached)."""
    try:
        from stock_agent.config import CacheTTLs
        from stock_agent.providers.offline import CsvProvider
        from stock_agent.services.market import MarketService
        from stock_agent.store.cache import ExecutionCache
        from stock_agent.store.keys import KeySpace
    except ImportError as exc:
        ctx.log(f"  (no MarketService hit: {exc})")
        return None
    keys = KeySpace("bench_cache_real")
    service = MarketService(CsvProvider(MARKET_DATA), ExecutionCache(client, keys, CacheTTLs()))
    try:
        service.analysis("AAPL")  # the miss computes and stores it
    except ImportError as exc:
        ctx.log(f"  (no MarketService hit: {exc})")
        return None
    for _ in range(20):
        service.analysis("AAPL")
    times = []
    for _ in range(max(samples, 20)):
        started = time.perf_counter()
        service.analysis("AAPL")
        times.append(_ms(started))
    stored = max(
        (client.strlen(k) for k in client.scan_iter(match=keys.cache_pattern(), count=100)),
        default=0,
    )
    return Stat.of(times), int(stored)
