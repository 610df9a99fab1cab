"""Property-based tests (hypothesis) of what the app accepts: ids, symbols and profile values
are accepted exactly when they fit their rule, refused with an InvalidInput (never another
exception, never a fallback), and an accepted value is stable when parsed again. And streamed
model text loses its control sequences however the tokens are cut."""

from __future__ import annotations

import io
import math
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from stock_agent.core.profile import parse_amount, parse_symbols, parse_threshold
from stock_agent.core.symbols import normalize_symbol
from stock_agent.errors import InvalidId, InvalidInput, InvalidSymbol
from stock_agent.sanitize import strip_control
from stock_agent.store.keys import KeySpace, validate_id
from stock_agent.ui.stream import StreamRenderer

ID_RULE = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
SYMBOL_RULE = re.compile(r"[A-Z0-9.\-^=]{1,15}")

any_text = st.text(max_size=80)
id_like = st.text(alphabet="abcXYZ019_.@-", min_size=0, max_size=70)


@given(st.one_of(any_text, id_like))
def test_an_id_is_accepted_exactly_when_it_fits_the_rule(value: str):
    fits = ID_RULE.fullmatch(value) is not None
    try:
        assert validate_id(value, "user id") == value
        accepted = True
    except InvalidId as exc:
        accepted = False
        assert exc.exit_code == 2 and "\n" not in exc.one_line()
    assert accepted == fits
    assert value or not accepted  # empty is invalid, never "the default"


@given(st.one_of(any_text, id_like))
def test_no_user_id_reaches_another_users_keys(value: str):
    keys = KeySpace("agent")
    try:
        key = keys.profile(value)
    except InvalidId:
        return
    # the user part is exactly the id: no pattern characters, no other user's prefix
    assert key == f"agent:memory:agent:{value}:profile"
    assert not set("*?[]{}: ") & set(value)


@given(st.one_of(any_text, st.text(alphabet="aApPlL.^=-0 $/", max_size=20)))
def test_a_symbol_is_accepted_exactly_when_it_fits(value: str):
    candidate = value.strip().upper()
    fits = SYMBOL_RULE.fullmatch(candidate) is not None and re.search(r"[A-Z0-9]", candidate)
    try:
        symbol = normalize_symbol(value)
    except InvalidSymbol:
        assert not fits
        return
    # a class share takes the dash form (BRK.B -> BRK-B); everything else is kept as typed
    assert fits and symbol in (candidate, re.sub(r"^([A-Z]{1,6})\.([A-C])$", r"\1-\2", candidate))
    assert normalize_symbol(symbol) == symbol  # stable


@given(st.lists(st.text(alphabet="abcMSFT ,.-", max_size=8), max_size=8))
def test_symbol_lists_are_unique_validated_and_in_order(values: list[str]):
    try:
        symbols = parse_symbols(values)
    except InvalidInput:
        return
    assert len(symbols) == len(set(symbols))
    assert all(normalize_symbol(s) == s for s in symbols)
    assert parse_symbols(symbols) == symbols


threshold_text = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.from_regex(r"\A[+-]?[0-9]{0,3}(\.[0-9]{0,3})?%?\Z"),
    any_text,
)


@given(threshold_text)
def test_an_alert_threshold_is_a_drop_between_0_and_minus_100_percent(value: object):
    try:
        parsed = parse_threshold(value)  # type: ignore[arg-type]
    except InvalidInput:
        return
    assert math.isfinite(parsed) and -1 < parsed < 0
    assert parse_threshold(parsed) == parsed
    assert parse_threshold(f"{parsed * 100}%") == parsed


amount_text = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**18), max_value=10**18),
    st.from_regex(r"\A\$?[0-9][0-9,_]{0,8}(\.[0-9]{1,2})?[kKmM]?\Z"),
    any_text,
)


@given(amount_text)
def test_a_portfolio_size_is_a_positive_finite_amount(value: object):
    try:
        parsed = parse_amount(value)  # type: ignore[arg-type]
    except InvalidInput:
        return
    assert math.isfinite(parsed) and parsed > 0
    assert parse_amount(parsed) == parsed


sequences = st.sampled_from(
    [
        "\x1b[31m",
        "\x1b[0m",
        "\x1b[2J",
        "\x1b]0;title\x07",
        "\x1b]8;;http://x\x1b\\",
        "\x9b1m",
        "\x1bP1$r\x1b\\",
        "\x1b7",
        "\x1b(B",
    ]
)
plain = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), max_size=12)


@settings(max_examples=200)
@given(st.lists(st.one_of(plain, sequences), max_size=12), st.lists(st.integers(0, 200)))
def test_streamed_text_loses_whole_control_sequences_however_it_is_cut(parts, cuts):
    full = "".join(parts)
    points = sorted({c % (len(full) + 1) for c in cuts})
    tokens = [full[a:b] for a, b in zip([0, *points], [*points, len(full)], strict=True)]
    out = io.StringIO()
    renderer = StreamRenderer(None, plain=True, out=out)
    with renderer:
        for token in tokens:
            renderer.on_llm_new_token(token)
    shown = out.getvalue()
    expected = strip_control(full)
    assert shown.rstrip("\n") == expected.rstrip("\n")
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f]", shown)
