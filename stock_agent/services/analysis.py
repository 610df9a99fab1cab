"""Analyse symbols for one user: cached base analyses, personalised with the user's profile
(alerts, position size) after the cache; comparisons ranked by one criterion; the watchlist
checked against the alert threshold."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal

from stock_agent.core.models import Analysis, Profile
from stock_agent.core.personalise import personalise
from stock_agent.core.profile import parse_symbols
from stock_agent.errors import InvalidInput, StockAgentError

if TYPE_CHECKING:
    from stock_agent.services.market import Listener, MarketService
    from stock_agent.store.profile import ProfileStore

log = logging.getLogger(__name__)

RankBy = Literal["return_1m", "return_3m", "return_1y", "rsi", "volatility", "drawdown", "beta"]


@dataclass(frozen=True)
class Criterion:
    """How `compare` ranks: which value, and whether higher is better."""

    label: str
    higher_first: bool

    def value(self, analysis: Analysis, name: str) -> float | None:
        ind = analysis.indicators
        values = {
            "return_1m": analysis.returns.m1,
            "return_3m": analysis.returns.m3,
            "return_1y": analysis.returns.y1,
            "rsi": ind.rsi_14,
            "volatility": ind.volatility_1y
            if ind.volatility_1y is not None
            else ind.volatility_20d,
            "drawdown": ind.max_drawdown_1y,
            "beta": ind.beta,
        }
        return values[name]


CRITERIA: dict[str, Criterion] = {
    "return_1m": Criterion("1-month return, highest first", True),
    "return_3m": Criterion("3-month return, highest first", True),
    "return_1y": Criterion("1-year return, highest first", True),
    "rsi": Criterion("RSI(14), highest first", True),
    "volatility": Criterion("annualised volatility, lowest first", False),
    "drawdown": Criterion("max drawdown, shallowest first", True),
    "beta": Criterion("beta, lowest first", False),
}


@dataclass(frozen=True)
class AnalysisBatch:
    """The analyses that worked, in the order asked, and the errors of those that did not.
    `items` keeps each symbol's place: an `Analysis` or the error for it."""

    items: tuple[Analysis | StockAgentError, ...]
    profile_note: str | None = None

    @property
    def analyses(self) -> list[Analysis]:
        return [a for a in self.items if isinstance(a, Analysis)]

    def __iter__(self) -> Iterator[Analysis]:
        return iter(self.analyses)

    def __len__(self) -> int:
        return len(self.analyses)

    @property
    def errors(self) -> list[StockAgentError]:
        return [e for e in self.items if isinstance(e, StockAgentError)]


@dataclass(frozen=True)
class Comparison:
    """Symbols ranked by `criterion` (best first); those without the value after them."""

    rank_by: str
    label: str
    ranked: tuple[Analysis, ...]
    unranked: tuple[Analysis, ...]
    errors: tuple[tuple[str, StockAgentError], ...] = ()


@dataclass(frozen=True)
class WatchItem:
    symbol: str
    analysis: Analysis | None
    error: StockAgentError | None = None

    @property
    def alerted(self) -> bool:
        return bool(self.analysis and self.analysis.alerts)


@dataclass(frozen=True)
class WatchlistReport:
    """Each preferred symbol with its 1-day move and whether it breached the threshold."""

    threshold: float | None
    items: tuple[WatchItem, ...] = field(default=())

    @property
    def empty(self) -> bool:
        return not self.items


class AnalysisService:
    """Analyses for a user. The base analysis comes from the cache and is the same for every
    user; the profile is applied afterwards, so no user's data ends up in a shared entry."""

    def __init__(self, market: MarketService, profiles: ProfileStore) -> None:
        self.market = market
        self.profiles = profiles

    def profile_of(self, user_id: str) -> tuple[Profile | None, str | None]:
        """The user's profile, or None and a note when it cannot be read (analyses still work)."""
        try:
            return self.profiles.get(user_id), None
        except Exception as exc:
            log.debug("profile unavailable for %s", user_id, exc_info=True)
            return (
                None,
                f"profile unavailable ({type(exc).__name__}); alerts and position not applied",
            )

    def analyze(
        self,
        symbols: Sequence[str],
        *,
        user_id: str | None = None,
        profile: Profile | None = None,
        listener: Listener | None = None,
    ) -> AnalysisBatch:
        """Each symbol's analysis, personalised with `profile` (or `user_id`'s profile)."""
        note = None
        if profile is None and user_id is not None:
            profile, note = self.profile_of(user_id)
        items: list[Analysis | StockAgentError] = []
        for item in self.market.analyses(symbols, listener=listener):
            if isinstance(item, Analysis):
                item = personalise(item, profile)
                if note and note not in item.notes:
                    item = replace(item, notes=(*item.notes, note))
            items.append(item)
        return AnalysisBatch(tuple(items), profile_note=note)

    def compare(
        self,
        symbols: Sequence[str],
        rank_by: str = "return_3m",
        *,
        listener: Listener | None = None,
    ) -> Comparison:
        """Rank `symbols` by one criterion (no personalisation: the same for every user)."""
        if rank_by not in CRITERIA:
            raise InvalidInput(
                f"unknown ranking {rank_by!r}", fix=f"use one of: {', '.join(CRITERIA)}"
            )
        criterion = CRITERIA[rank_by]
        done, errors = [], []
        for symbol, item in zip(
            symbols, self.market.analyses(symbols, listener=listener), strict=True
        ):
            if isinstance(item, Analysis):
                done.append(item)
            else:
                errors.append((symbol, item))
        ranked = [a for a in done if criterion.value(a, rank_by) is not None]
        ranked.sort(
            key=lambda a: criterion.value(a, rank_by) or 0.0, reverse=criterion.higher_first
        )
        unranked = [a for a in done if criterion.value(a, rank_by) is None]
        return Comparison(rank_by, criterion.label, tuple(ranked), tuple(unranked), tuple(errors))

    def watchlist(self, user_id: str, *, listener: Listener | None = None) -> WatchlistReport:
        """The user's preferred symbols checked against their alert threshold."""
        profile = self.profiles.get(user_id)
        symbols = list(profile.preferred_symbols)
        if not symbols:
            return WatchlistReport(profile.alert_threshold, ())
        batch = self.analyze(symbols, profile=profile, listener=listener)
        items = tuple(
            WatchItem(s, a, None) if isinstance(a, Analysis) else WatchItem(s, None, a)
            for s, a in zip(symbols, batch.items, strict=True)
        )
        return WatchlistReport(profile.alert_threshold, items)


def choose_symbols(symbols: Sequence[str], profile: Profile, *, limit: int) -> list[str]:
    """The symbols asked for, else the profile's preferred ones; validated, at most `limit`."""
    chosen = parse_symbols(list(symbols)) if symbols else list(profile.preferred_symbols)
    if not chosen:
        raise InvalidInput(
            "no symbols to analyze",
            fix="name some (`stock-agent analyze AAPL MSFT`) or save them (`stock-agent profile add-symbol AAPL`)",
        )
    if len(chosen) > limit:
        raise InvalidInput(
            f"too many symbols ({len(chosen)})", fix=f"analyze at most {limit} at a time"
        )
    return chosen
