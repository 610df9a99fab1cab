"""Persistent per-user preferences in one Redis hash (no TTL).

Each field is its own hash field, so two processes setting different fields never overwrite
each other; symbol lists are changed by a server-side script, so concurrent additions merge.
Values are JSON or plain strings, never pickle.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from stock_agent.errors import InvalidInput
from stock_agent.market.symbols import normalize_symbol

if TYPE_CHECKING:
    import redis

    from stock_agent.store.keys import KeySpace

PROFILE_FIELDS = ("preferred_symbols", "alert_threshold", "portfolio_size", "notes")
MAX_SYMBOLS = 50
MAX_NOTES = 2000

# KEYS[1] = profile hash; ARGV[1] = "add" | "remove", ARGV[2] = now, ARGV[3] = max symbols,
# ARGV[4..] = symbols.
# Read-modify-write of the JSON list happens inside the server, so it is atomic.
_CHANGE_SYMBOLS = """
local raw = redis.call('HGET', KEYS[1], 'preferred_symbols')
local current = {}
if raw then
  local ok, decoded = pcall(cjson.decode, raw)
  if ok and type(decoded) == 'table' then current = decoded end
end
local result = {}
if ARGV[1] == 'add' then
  local seen = {}
  for _, s in ipairs(current) do
    if not seen[s] then seen[s] = true; table.insert(result, s) end
  end
  for i = 4, #ARGV do
    if not seen[ARGV[i]] then seen[ARGV[i]] = true; table.insert(result, ARGV[i]) end
  end
  if #result > tonumber(ARGV[3]) then return redis.error_reply('too many symbols') end
else
  local drop = {}
  for i = 4, #ARGV do drop[ARGV[i]] = true end
  for _, s in ipairs(current) do
    if not drop[s] then table.insert(result, s) end
  end
end
local encoded = '[]'
if #result > 0 then encoded = cjson.encode(result) end
redis.call('HSET', KEYS[1], 'preferred_symbols', encoded, 'updated_at', ARGV[2])
return encoded
"""


@dataclass
class Profile:
    """A user's preferences. `alert_threshold` is a fraction: -0.05 alerts on a 1-day drop of 5% or more."""

    preferred_symbols: list[str] = field(default_factory=list)
    alert_threshold: float | None = None
    portfolio_size: float | None = None
    notes: str | None = None
    updated_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def is_empty(self) -> bool:
        return not (
            self.preferred_symbols
            or self.alert_threshold is not None
            or self.portfolio_size
            or self.notes
        )


def parse_threshold(value: str | float) -> float:
    """`-5%` or `-0.05` -> -0.05. Must be a drop between 0 and -100%."""
    text = str(value).strip().replace(" ", "")
    try:
        number = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise InvalidInput(
            f"invalid alert_threshold {value!r}", fix="give a 1-day drop such as -5% or -0.05"
        ) from None
    if not math.isfinite(number) or not -1 < number < 0:
        hint = f" (did you mean {text}%?)" if not text.endswith("%") and -100 < number <= -1 else ""
        raise InvalidInput(
            f"alert_threshold must be a drop between 0% and -100%, got {value!r}{hint}",
            fix="give a negative change such as -5% or -0.05",
        )
    return round(number, 6)


_AMOUNT_RE = re.compile(r"^[$€£¥]?([0-9][0-9_,]*(?:\.[0-9]+)?)([kKmM]?)$")


def parse_amount(value: str | float) -> float:
    """`100000`, `100,000`, `$250k`, `1.5m` -> a positive amount."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    else:
        match = _AMOUNT_RE.match(str(value).strip())
        if not match:
            raise InvalidInput(
                f"invalid portfolio_size {value!r}",
                fix="give an amount such as 100000, 100k or 1.5m",
            )
        number = float(match.group(1).replace(",", "").replace("_", ""))
        number *= {"": 1, "k": 1e3, "m": 1e6}[match.group(2).lower()]
    if not math.isfinite(number) or number <= 0:
        raise InvalidInput(
            f"portfolio_size must be a positive amount, got {value!r}", fix="e.g. 100000"
        )
    return number


def parse_symbols(values: list[str] | str) -> list[str]:
    """Validated, upper-cased, de-duplicated symbols in the given order (`AAPL,msft` or a list)."""
    items = values.replace(",", " ").split() if isinstance(values, str) else list(values)
    result: list[str] = []
    for item in items:
        for part in str(item).replace(",", " ").split():
            symbol = normalize_symbol(part)
            if symbol not in result:
                result.append(symbol)
    return result


class ProfileStore:
    """Reads and changes profiles. Every method validates before it writes, so bad input changes nothing."""

    def __init__(self, client: redis.Redis, keys: KeySpace) -> None:
        self.client = client
        self.keys = keys
        self._change_symbols = client.register_script(_CHANGE_SYMBOLS)

    def get(self, user_id: str) -> Profile:
        return self.from_hash(self.client.hgetall(self.keys.profile(user_id)))  # type: ignore[arg-type]

    @staticmethod
    def from_hash(raw: dict[str, str]) -> Profile:
        """A Profile from the raw Redis hash (tolerates missing or malformed fields)."""
        profile = Profile()
        if symbols := raw.get("preferred_symbols"):
            try:
                decoded = json.loads(symbols)
                profile.preferred_symbols = (
                    [s for s in decoded if isinstance(s, str)] if isinstance(decoded, list) else []
                )
            except json.JSONDecodeError:
                profile.preferred_symbols = []
        for name in ("alert_threshold", "portfolio_size", "updated_at"):
            if (text := raw.get(name)) not in (None, ""):
                with contextlib.suppress(ValueError):
                    setattr(profile, name, float(text))
        profile.notes = raw.get("notes") or None
        return profile

    def set_field(self, user_id: str, name: str, value: Any) -> Profile:
        """Set one field from text or a number; `None` or "" clears it."""
        key = self.keys.profile(user_id)
        if name not in PROFILE_FIELDS:
            raise InvalidInput(
                f"unknown profile field {name!r}", fix=f"use one of: {', '.join(PROFILE_FIELDS)}"
            )
        if value is None or (
            isinstance(value, str) and value.strip().lower() in ("", "none", "null")
        ):
            pipe = self.client.pipeline()
            pipe.hdel(key, name)
            pipe.hset(key, "updated_at", repr(time.time()))
            pipe.execute()
            return self.get(user_id)
        encoded: str
        if name == "preferred_symbols":
            symbols = parse_symbols(value if isinstance(value, list | str) else str(value))
            if len(symbols) > MAX_SYMBOLS:
                raise InvalidInput(
                    f"at most {MAX_SYMBOLS} preferred symbols", fix="remove some first"
                )
            encoded = json.dumps(symbols)
        elif name == "alert_threshold":
            encoded = repr(parse_threshold(value))
        elif name == "portfolio_size":
            encoded = repr(parse_amount(value))
        else:
            text = str(value).strip()
            if len(text) > MAX_NOTES:
                raise InvalidInput(f"notes are limited to {MAX_NOTES} characters, got {len(text)}")
            encoded = text
        self.client.hset(key, mapping={name: encoded, "updated_at": repr(time.time())})
        return self.get(user_id)

    def _change(self, user_id: str, op: str, symbols: list[str] | str) -> Profile:
        parsed = parse_symbols(symbols)
        if not parsed:
            raise InvalidInput("no symbol given", fix="e.g. `add-symbol AAPL MSFT`")
        if op == "add" and len(parsed) > MAX_SYMBOLS:
            raise InvalidInput(f"at most {MAX_SYMBOLS} preferred symbols", fix="remove some first")
        import redis

        try:
            self._change_symbols(
                keys=[self.keys.profile(user_id)],
                args=[op, repr(time.time()), MAX_SYMBOLS, *parsed],
            )
        except redis.ResponseError as exc:
            if "too many symbols" in str(exc):
                raise InvalidInput(
                    f"at most {MAX_SYMBOLS} preferred symbols", fix="remove some first"
                ) from None
            raise
        return self.get(user_id)

    def add_symbols(self, user_id: str, symbols: list[str] | str) -> Profile:
        return self._change(user_id, "add", symbols)

    def remove_symbols(self, user_id: str, symbols: list[str] | str) -> Profile:
        return self._change(user_id, "remove", symbols)

    def reset(self, user_id: str) -> bool:
        return bool(self.client.delete(self.keys.profile(user_id)))
