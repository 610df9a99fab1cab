"""The typed domain models that every layer passes around: providers and the analysis return
them; the services, tools, renderers, the cache and `--json` read the same fields.

Each model is a frozen dataclass with `to_dict()` (the stable JSON form: `analyze --json`
items are `Analysis.to_dict()`) and `from_dict()` (strict: a shape that does not fit raises
`ModelError`, so the cache treats it as a miss). `schema_version(Model)` is derived from the
field names and types, so a cache entry written by an older shape is never served.
Stdlib only: a cache hit needs neither numpy nor pandas.
"""

from __future__ import annotations

import dataclasses
import hashlib
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar, Union, get_args, get_origin

M = TypeVar("M", bound="Model")


class ModelError(ValueError):
    """Data that does not have the shape of the model (e.g. a stale or corrupt cache entry)."""


class Model:
    """Base of the domain models: `to_dict`, `from_dict` and JSON names for fields."""

    # field name -> JSON name, where a JSON name is not an identifier ("1d")
    json_names: ClassVar[dict[str, str]] = {}

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            out[self.json_names.get(f.name, f.name)] = _dump(getattr(self, f.name))
        return out

    @classmethod
    def from_dict(cls: type[M], data: Any) -> M:
        if not isinstance(data, dict):
            raise ModelError(f"{cls.__name__}: expected an object, got {type(data).__name__}")
        values: dict[str, Any] = {}
        for name, key, load, has_default, where in _plan(cls):
            if key not in data:
                if has_default:
                    continue
                raise ModelError(f"{cls.__name__}: missing {key!r}")
            values[name] = load(data[key], where)
        return cls(**values)


def _dump(value: Any) -> Any:
    if isinstance(value, Model):
        return value.to_dict()
    if isinstance(value, tuple | list):
        return [_dump(v) for v in value]
    return value


_FIELDS: dict[type, tuple[tuple[str, Any, bool], ...]] = {}
_VERSIONS: dict[type, str] = {}


def _fields(cls: type) -> tuple[tuple[str, Any, bool], ...]:
    """(name, type, has a default) of each field; worked out once per class."""
    found = _FIELDS.get(cls)
    if found is None:
        found = _FIELDS[cls] = _read_fields(cls)
    return found


def _read_fields(cls: type) -> tuple[tuple[str, Any, bool], ...]:
    hints = typing.get_type_hints(cls)
    return tuple(
        (
            f.name,
            hints[f.name],
            f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING,
        )
        for f in dataclasses.fields(cls)
    )


Loader = Callable[[Any, str], Any]
_PLANS: dict[type, tuple[tuple[str, str, Loader, bool, str], ...]] = {}
_LOADERS: dict[Any, Loader] = {}


def _plan(cls: type[Model]) -> tuple[tuple[str, str, Loader, bool, str], ...]:
    """(field, JSON name, loader, has a default, where for errors) of each field of `cls`:
    worked out once per class, so loading a cached entry only checks values."""
    found = _PLANS.get(cls)
    if found is None:
        found = _PLANS[cls] = tuple(
            (name, key, _loader(hint), has_default, f"{cls.__name__}.{key}")
            for name, hint, has_default in _fields(cls)
            for key in [cls.json_names.get(name, name)]
        )
    return found


def _loader(hint: Any) -> Loader:
    """A function that checks and converts a JSON value to `hint` (made once per type)."""
    found = _LOADERS.get(hint)
    if found is None:
        found = _LOADERS[hint] = _make_loader(hint)
    return found


def _make_loader(hint: Any) -> Loader:
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        options = get_args(hint)
        nullable = type(None) in options
        loaders = [_loader(o) for o in options if o is not type(None)]

        def load_union(value: Any, where: str) -> Any:
            if value is None and nullable:
                return None
            errors = []
            for load in loaders:
                try:
                    return load(value, where)
                except ModelError as exc:
                    errors.append(str(exc))
            raise ModelError(errors[0] if errors else f"{where}: unexpected {value!r}")

        return load_union
    if origin in (tuple, list):
        (item,) = get_args(hint)[:1]
        load_item = _loader(item)
        as_tuple = origin is tuple

        def load_sequence(value: Any, where: str) -> Any:
            if not isinstance(value, list | tuple):
                raise ModelError(f"{where}: expected a list")
            items = [load_item(v, where) for v in value]
            return tuple(items) if as_tuple else items

        return load_sequence
    if isinstance(hint, type) and issubclass(hint, Model):
        model = hint
        return lambda value, where: model.from_dict(value)
    if hint is float:

        def load_float(value: Any, where: str) -> float:
            if isinstance(value, int | float) and not isinstance(value, bool):
                return float(value)
            raise ModelError(f"{where}: expected a number, got {value!r}")

        return load_float
    if hint is int:

        def load_int(value: Any, where: str) -> int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            raise ModelError(f"{where}: expected a whole number, got {value!r}")

        return load_int
    if hint is str:

        def load_str(value: Any, where: str) -> str:
            if isinstance(value, str):
                return value
            raise ModelError(f"{where}: expected text, got {value!r}")

        return load_str
    if hint is bool:

        def load_bool(value: Any, where: str) -> bool:
            if isinstance(value, bool):
                return value
            raise ModelError(f"{where}: expected true or false, got {value!r}")

        return load_bool
    if hint is type(None):

        def load_none(value: Any, where: str) -> None:
            if value is None:
                return None
            raise ModelError(f"{where}: expected null")

        return load_none
    raise TypeError(f"a model field of type {hint!r} cannot be loaded")  # a model bug


def _describe(hint: Any, seen: set[type]) -> str:
    if isinstance(hint, type) and issubclass(hint, Model):
        if hint in seen:
            return hint.__name__
        seen.add(hint)
        inner = ",".join(f"{n}:{_describe(h, seen)}" for n, h, _ in _fields(hint))
        return f"{hint.__name__}({inner})"
    args = get_args(hint)
    if args:
        return f"{getattr(get_origin(hint), '__name__', 'union')}[{','.join(_describe(a, seen) for a in args)}]"
    return getattr(hint, "__name__", repr(hint))


def schema_version(model: type[Model]) -> str:
    """A short hash of the model's field names and types (nested models included): it changes
    whenever the stored shape does, so it is part of every cache key of that model."""
    found = _VERSIONS.get(model)
    if found is None:
        found = _VERSIONS[model] = hashlib.sha256(_describe(model, set()).encode()).hexdigest()[:10]
    return found


# --------------------------------------------------------------------------- market data


@dataclass(frozen=True)
class Quote(Model):
    """The latest price. `change_pct` is a fraction; `as_of` an ISO date or time."""

    symbol: str
    price: float
    previous_close: float | None = None
    change: float | None = None
    change_pct: float | None = None
    currency: str | None = None
    as_of: str | None = None
    source: str | None = None
    # the last good quote served because the source failed (see `fetched_at`)
    stale: bool = False
    fetched_at: str | None = None  # ISO 8601 UTC time of the fetch


@dataclass(frozen=True)
class BarsSummary(Model):
    """Dates and closes of a symbol's daily bars: what beta needs from a benchmark, and what
    a sparkline draws. Both tuples have the same length, oldest first."""

    symbol: str
    dates: tuple[str, ...]
    closes: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.dates) != len(self.closes):
            raise ModelError("BarsSummary: dates and closes differ in length")


@dataclass(frozen=True)
class Returns(Model):
    """Returns over trading-bar windows, as fractions; `ytd` from the last close of last year."""

    json_names: ClassVar[dict[str, str]] = {
        "d1": "1d",
        "d5": "5d",
        "m1": "1m",
        "m3": "3m",
        "m6": "6m",
        "y1": "1y",
    }
    # window name -> bars, in the order people read them
    windows: ClassVar[dict[str, int]] = {"1d": 1, "5d": 5, "1m": 21, "3m": 63, "6m": 126, "1y": 252}

    d1: float | None = None
    d5: float | None = None
    m1: float | None = None
    m3: float | None = None
    m6: float | None = None
    y1: float | None = None
    ytd: float | None = None

    def get(self, name: str) -> float | None:
        """The return by its JSON name ("1d", "ytd", ...)."""
        return self.to_dict().get(name)


@dataclass(frozen=True)
class Indicators(Model):
    """Technical indicators at the last bar. Prices as prices; volatility and drawdown as
    fractions; RSI 0-100; beta against the benchmark."""

    sma_20: float | None = None
    sma_50: float | None = None
    sma_200: float | None = None
    ema_20: float | None = None
    rsi_14: float | None = None
    macd: float | None = None
    macd_signal: float | None = None
    macd_hist: float | None = None
    bb_upper: float | None = None
    bb_middle: float | None = None
    bb_lower: float | None = None
    atr_14: float | None = None
    volatility_20d: float | None = None
    volatility_1y: float | None = None
    max_drawdown_1y: float | None = None
    beta: float | None = None


@dataclass(frozen=True)
class Signal(Model):
    """One reading of an indicator: `name` (e.g. "rsi_14"), `state` (e.g. "oversold"), `text`."""

    name: str
    state: str
    text: str


@dataclass(frozen=True)
class Alert(Model):
    """A user's alert that fired: a 1-day change at or below their threshold."""

    kind: str
    text: str
    threshold: float
    change_1d: float


@dataclass(frozen=True)
class Position(Model):
    """A suggested position size for one user's portfolio, with the method that sized it."""

    portfolio_size: float
    shares: int
    value: float
    pct_of_portfolio: float | None
    stop_price: float | None
    risk_amount: float | None
    method: str


@dataclass(frozen=True)
class Analysis(Model):
    """The analysis of one symbol. The base analysis is the same for every user (and cached);
    `alerts` and `position` are filled in per user by `core.analysis.personalise`."""

    symbol: str
    as_of: str
    price: float
    bars: int
    returns: Returns
    indicators: Indicators
    high_52w: float | None
    low_52w: float | None
    pct_from_high_52w: float | None
    pct_from_low_52w: float | None
    volume: int
    volume_avg_20d: int | None
    volume_ratio_20d: float | None
    benchmark: str | None
    signals: tuple[Signal, ...] = ()
    alerts: tuple[Alert, ...] = ()
    position: Position | None = None
    notes: tuple[str, ...] = ()
    returns_calendar: CalendarReturns | None = None
    unrounded: Unrounded | None = None
    source: str | None = None  # the provider: "yfinance", "offline"
    # the last good analysis served because the source failed (see `fetched_at`)
    stale: bool = False
    fetched_at: str | None = None  # ISO 8601 UTC time of the fetch

    def signal(self, name: str) -> Signal | None:
        return next((s for s in self.signals if s.name == name), None)

    @property
    def trend(self) -> str | None:
        """ "up" (price > SMA 50 > SMA 200), "down" (the reverse), "mixed", or None."""
        sma50, sma200 = self.indicators.sma_50, self.indicators.sma_200
        if sma50 is None or sma200 is None:
            return None
        if self.price > sma50 > sma200:
            return "up"
        if self.price < sma50 < sma200:
            return "down"
        return "mixed"


@dataclass(frozen=True)
class Fundamentals(Model):
    """Company facts and valuation. Yields and margins are fractions; missing values None."""

    symbol: str
    name: str | None = None
    sector: str | None = None
    industry: str | None = None
    currency: str | None = None
    exchange: str | None = None
    quote_type: str | None = None
    market_cap: float | None = None
    trailing_pe: float | None = None
    forward_pe: float | None = None
    price_to_book: float | None = None
    dividend_yield: float | None = None
    eps: float | None = None
    forward_eps: float | None = None
    revenue: float | None = None
    profit_margin: float | None = None
    beta: float | None = None
    fifty_two_week_high: float | None = None
    fifty_two_week_low: float | None = None
    source: str | None = None
    stale: bool = False  # the last good facts, served because the source failed
    fetched_at: str | None = None  # ISO 8601 UTC time of the fetch


@dataclass(frozen=True)
class NewsItem(Model):
    """One headline. `published` is an ISO 8601 UTC time."""

    title: str
    publisher: str | None = None
    published: str | None = None
    link: str | None = None


@dataclass(frozen=True)
class News(Model):
    """The latest headlines about one symbol, newest first."""

    symbol: str
    items: tuple[NewsItem, ...] = ()
    stale: bool = False  # the last good headlines, served because the source failed
    fetched_at: str | None = None  # ISO 8601 UTC time of the fetch


# --------------------------------------------------------------------------- the user


@dataclass(frozen=True)
class Profile(Model):
    """A user's preferences. `alert_threshold` is a fraction: -0.05 alerts on a 1-day drop of
    5 % or more. Validation of each field lives in `core.profile`."""

    preferred_symbols: list[str] = field(default_factory=list)
    alert_threshold: float | None = None
    portfolio_size: float | None = None
    notes: str | None = None
    updated_at: float | None = None
    # per-symbol drop thresholds (they win over `alert_threshold` for their symbol), by symbol
    symbol_alerts: tuple[SymbolAlert, ...] = ()
    currency: str | None = None  # of portfolio_size, an ISO code; None reads as USD

    @property
    def is_empty(self) -> bool:
        return not (
            self.preferred_symbols
            or self.alert_threshold is not None
            or self.portfolio_size
            or self.notes
            or self.symbol_alerts
        )

    def threshold_for(self, symbol: str) -> float | None:
        """The drop that alerts for `symbol`: its own threshold, else `alert_threshold`."""
        own = next((a.threshold for a in self.symbol_alerts if a.symbol == symbol), None)
        return own if own is not None else self.alert_threshold


# --------------------------------------------------------------------------- charts


@dataclass(frozen=True)
class DailyBars(Model):
    """A symbol's daily bars as columns (oldest first, all the same length): what a chart
    draws. `dates` are ISO dates; volumes are share counts (floats, as the providers give)."""

    symbol: str
    dates: tuple[str, ...]
    opens: tuple[float, ...]
    highs: tuple[float, ...]
    lows: tuple[float, ...]
    closes: tuple[float, ...]
    volumes: tuple[float, ...]
    source: str | None = None

    def __post_init__(self) -> None:
        n = len(self.dates)
        if any(len(c) != n for c in (self.opens, self.highs, self.lows, self.closes, self.volumes)):
            raise ModelError("DailyBars: the columns differ in length")

    def __len__(self) -> int:
        return len(self.dates)

    def last(self, count: int) -> DailyBars:
        """The last `count` bars (all of them when there are fewer)."""
        start = max(0, len(self.dates) - max(0, count))
        return DailyBars(
            self.symbol,
            self.dates[start:],
            self.opens[start:],
            self.highs[start:],
            self.lows[start:],
            self.closes[start:],
            self.volumes[start:],
            self.source,
        )

    def closes_summary(self, count: int) -> BarsSummary:
        """The dates and closes of the last `count` bars (e.g. for a sparkline)."""
        tail = self.last(count)
        return BarsSummary(self.symbol, tail.dates, tail.closes)


# --------------------------------------------------------------------------- honest analysis


@dataclass(frozen=True)
class CalendarStarts(Model):
    """The date of the close each calendar return starts from (ISO dates; None: no bar)."""

    json_names: ClassVar[dict[str, str]] = {"m1": "1m", "m3": "3m", "m6": "6m", "y1": "1y"}

    m1: str | None = None
    m3: str | None = None
    m6: str | None = None
    y1: str | None = None
    ytd: str | None = None


@dataclass(frozen=True)
class CalendarReturns(Model):
    """Returns over calendar periods ending on `as_of` (the last bar's date), as finance sites
    show them: the last close against the close on the same date 1, 3, 6 or 12 months earlier
    (or the last trading day before it); `ytd` against the last close of the previous year.
    `since` holds the date of each starting close. (`Analysis.returns` keeps the trading-bar
    windows that the indicators use.)"""

    json_names: ClassVar[dict[str, str]] = {"m1": "1m", "m3": "3m", "m6": "6m", "y1": "1y"}
    # period name -> calendar months back
    months: ClassVar[dict[str, int]] = {"1m": 1, "3m": 3, "6m": 6, "1y": 12}

    as_of: str
    m1: float | None = None
    m3: float | None = None
    m6: float | None = None
    y1: float | None = None
    ytd: float | None = None
    since: CalendarStarts = field(default_factory=CalendarStarts)


@dataclass(frozen=True)
class Unrounded(Model):
    """Full-precision values for what is decided by comparing or multiplying them (the drop
    alert, the position size): the rounded figures of an analysis are for reading."""

    price: float
    change_1d: float | None = None
    atr_14: float | None = None


# --------------------------------------------------------------------------- watch


@dataclass(frozen=True)
class SymbolAlert(Model):
    """A user's own drop threshold for one symbol (a fraction, like `Profile.alert_threshold`:
    -0.03 alerts on a 1-day drop of 3 % or more)."""

    symbol: str
    threshold: float
