"""The provider registry: built-ins, a provider registered by a test, the choice from the
settings, the protocol both built-ins follow, and what importing the package costs."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

from stock_agent import errors, providers
from stock_agent.config import Settings
from stock_agent.core.models import Fundamentals, NewsItem, Quote
from stock_agent.providers import (
    MarketDataProvider,
    ProviderCheck,
    make_provider,
    names,
    register,
    unregister,
)
from stock_agent.providers.base import ALL_CAPABILITIES
from stock_agent.providers.offline import CsvProvider
from stock_agent.providers.yahoo import YFinanceProvider
from stock_agent.ui.doctor import FAIL, OK, check_data_source
from tests.conftest import MARKET_DATA, REPO


class StubProvider:
    """A source of quotes only, as a plugin would write one."""

    name = "stub"
    capabilities = frozenset({"quote"})

    def __init__(self, settings: Settings, answer: ProviderCheck | None = None) -> None:
        self.settings = settings
        self.answer = answer or ProviderCheck(True, "ok", "stub data")

    def history(self, symbol, days=800):
        raise errors.DataUnavailable("no bars from the stub")

    def quote(self, symbol):
        return Quote(symbol=symbol, price=1.0, source=self.name)

    def fundamentals(self, symbol) -> Fundamentals:
        raise errors.DataUnavailable("no fundamentals from the stub")

    def news(self, symbol, limit=5) -> list[NewsItem]:
        raise errors.DataUnavailable("no news from the stub")

    def check(self, timeout=5.0):
        return self.answer

    def identity(self, symbol):
        return "stub"


@pytest.fixture
def stub() -> Iterator[list[StubProvider]]:
    """Registers "stub" for one test; yields the providers it built."""
    built: list[StubProvider] = []

    def factory(settings: Settings) -> StubProvider:
        built.append(StubProvider(settings))
        return built[-1]

    register("stub", factory)
    try:
        yield built
    finally:
        unregister("stub")


def test_the_built_ins_are_registered():
    assert names()[:2] == ("offline", "yfinance")


def test_the_settings_choose_offline_or_yahoo(tmp_path):
    offline = make_provider(Settings(data_dir=MARKET_DATA, home=tmp_path))
    assert isinstance(offline, CsvProvider) and offline.data_dir == MARKET_DATA
    assert isinstance(make_provider(Settings(data_dir=None, home=tmp_path)), YFinanceProvider)
    # by name, whatever the settings say
    named = make_provider(Settings(data_dir=MARKET_DATA, home=tmp_path), name="yfinance")
    assert isinstance(named, YFinanceProvider)


def test_a_registered_provider_is_built_by_name(stub, tmp_path):
    settings = Settings(home=tmp_path)
    provider = make_provider(settings, name="stub")
    assert stub == [provider] and provider.settings is settings
    assert isinstance(provider, MarketDataProvider)
    assert "stub" in names()
    assert make_provider(settings).name == "yfinance"  # registering chose nothing by itself


def test_a_registered_provider_is_chosen_when_the_settings_select_it(stub, tmp_path, monkeypatch):
    # `selected_name` is where a `provider` setting will be read; make_provider follows it
    monkeypatch.setattr(providers, "selected_name", lambda settings: "stub")
    provider = make_provider(Settings(data_dir=MARKET_DATA, home=tmp_path))
    assert isinstance(provider, StubProvider) and provider.quote("AAPL").price == 1.0


def test_unregistered_provider(stub, tmp_path):
    unregister("stub")
    with pytest.raises(errors.ConfigError) as info:
        make_provider(Settings(home=tmp_path), name="stub")
    assert "unknown market data provider 'stub'" in info.value.message
    assert info.value.fix and "offline" in info.value.fix and "yfinance" in info.value.fix
    unregister("stub")  # a second time is a no-op


def test_registering_a_taken_name_needs_replace(stub):
    with pytest.raises(ValueError, match="already registered"):
        register("stub", lambda settings: StubProvider(settings))
    with pytest.raises(ValueError):
        register("offline", lambda settings: StubProvider(settings))


def test_replacing_a_registration(stub, tmp_path):
    def second(settings: Settings) -> StubProvider:
        return StubProvider(settings, ProviderCheck(True, "ok", "second"))

    register("stub", second, replace=True)
    assert make_provider(Settings(home=tmp_path), name="stub").check().detail == "second"


@pytest.mark.parametrize("name", ["", "Stub", "my provider", "a/b", "x" * 33, None])
def test_provider_names_are_checked(name):
    with pytest.raises(ValueError, match="invalid provider name"):
        register(name, lambda settings: StubProvider(settings))


def test_a_factory_must_be_callable():
    with pytest.raises(TypeError):
        register("stub2", "not a factory")


def test_both_built_ins_follow_the_protocol(tmp_path):
    for provider in (CsvProvider(MARKET_DATA), YFinanceProvider()):
        assert isinstance(provider, MarketDataProvider)
        assert provider.capabilities <= ALL_CAPABILITIES
        assert isinstance(provider.identity("AAPL"), str)
    assert CsvProvider.capabilities == {"quote", "history"}
    assert YFinanceProvider.capabilities == {"quote", "history", "fundamentals", "news"}


def test_importing_building_and_identity_load_no_heavy_library():
    """A cache hit needs the provider's name and identity: they must not cost pandas,
    numpy, yfinance or tenacity (nor does building either provider, nor the offline check)."""
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        import stock_agent.providers as providers
        from stock_agent.config import Settings
        offline = providers.make_provider(Settings(data_dir=Path({str(MARKET_DATA)!r}), home=Path("/tmp")))
        live = providers.make_provider(Settings(home=Path("/tmp")))
        offline.identity("AAPL"), live.identity("AAPL"), providers.names()
        assert offline.check().ok
        heavy = [m for m in ("pandas", "numpy", "yfinance", "tenacity", "curl_cffi") if m in sys.modules]
        assert not heavy, heavy
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=REPO, timeout=60)


# --- doctor asks the provider -------------------------------------------------------------------


def test_doctor_reports_the_providers_check(stub, tmp_path, monkeypatch):
    monkeypatch.setattr(providers, "selected_name", lambda settings: "stub")
    assert check_data_source(Settings(home=tmp_path)) == (OK, "stub data")

    failing = ProviderCheck(False, "rate-limited", "the stub is rate limited", "wait a minute")
    monkeypatch.setattr(StubProvider, "check", lambda self, timeout=5.0: failing)
    assert check_data_source(Settings(home=tmp_path)) == (
        FAIL,
        "the stub is rate limited (wait a minute)",
    )


def test_doctor_on_offline_data(tmp_path):
    state, text = check_data_source(Settings(data_dir=MARKET_DATA, home=tmp_path))
    assert state == OK and text.startswith(f"offline CSV files in {MARKET_DATA}: 7 symbols")
    state, text = check_data_source(Settings(data_dir=tmp_path / "nowhere", home=tmp_path))
    assert state == FAIL and f"offline data folder {tmp_path / 'nowhere'} does not exist" in text
    assert "STOCK_AGENT_DATA_DIR" in text


def test_doctor_gives_the_timeout_to_the_check(stub, tmp_path, monkeypatch):
    seen: list[float] = []

    def check(self, timeout=5.0):
        seen.append(timeout)
        return ProviderCheck(True, "ok", "fine")

    monkeypatch.setattr(providers, "selected_name", lambda settings: "stub")
    monkeypatch.setattr(StubProvider, "check", check)
    check_data_source(Settings(home=tmp_path), timeout=1.5)
    assert seen == [1.5]
