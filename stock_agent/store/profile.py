"""Persistent per-user preferences in one Redis hash (no TTL).

Each field is its own hash field, so two processes setting different fields never overwrite
each other; symbol lists are changed by a server-side script, so concurrent additions merge.
Values are JSON or plain strings, never pickle.

A profile only personalises: a damaged one (another Redis type at its key) never stops a
command. Reads give an empty profile and one warning naming the key and the repair command;
writes fail with that same line (`WrongTypeKey`). ACL denials and a full server are
reported as such (store/errors.py), never as "cannot reach Redis".
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from stock_agent.core.limits import (
    MAX_NOTES,
    MAX_PREFERRED_SYMBOLS,
    PROFILE_FIELDS,
    SETTABLE_PROFILE_FIELDS,
)
from stock_agent.core.models import Profile, SymbolAlert
from stock_agent.core.profile import (
    parse_amount,
    parse_currency,
    parse_symbol_alert,
    parse_symbols,
    parse_threshold,
)
from stock_agent.core.symbols import normalize_symbol
from stock_agent.errors import InvalidInput
from stock_agent.store.errors import is_wrong_type, raise_reply, translated, wrong_type

if TYPE_CHECKING:
    import redis

    from stock_agent.store.keys import KeySpace

log = logging.getLogger(__name__)

MAX_SYMBOLS = MAX_PREFERRED_SYMBOLS
__all__ = ["MAX_NOTES", "MAX_SYMBOLS", "PROFILE_FIELDS", "Profile", "ProfileStore"]

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


class ProfileStore:
    """Reads and changes profiles. Every method validates before it writes, so bad input changes nothing."""

    def __init__(self, client: redis.Redis, keys: KeySpace) -> None:
        self.client = client
        self.keys = keys
        self._change_symbols = client.register_script(_CHANGE_SYMBOLS)
        self._warned: set[str] = set()

    def get(self, user_id: str) -> Profile:
        """The user's profile; an empty one (and one warning) when the stored one is damaged."""
        key = self.keys.profile(user_id)
        try:
            raw = self.client.hgetall(key)
        except Exception as exc:  # redis errors: WRONGTYPE degrades, the rest is typed
            return self.from_reply(exc, key)
        return self.from_hash(raw)  # type: ignore[arg-type]

    def from_reply(self, reply: Any, key: str) -> Profile:
        """A Profile from an HGETALL reply that may be an error (a pipeline's
        `raise_on_error=False`): a wrong-type key reads as an empty profile with one warning
        per key and process; any other error is raised, typed."""
        if is_wrong_type(reply):
            if key not in self._warned:
                self._warned.add(key)
                damaged = wrong_type(self.client, self.keys, key)
                log.warning("warning: profile not applied: %s (%s)", damaged.message, damaged.fix)
            return Profile(preferred_symbols=[])
        raise_reply(reply, client=self.client, key=key, keys=self.keys)
        return self.from_hash(reply)

    @staticmethod
    def from_hash(raw: dict[str, str]) -> Profile:
        """A Profile from the raw Redis hash (tolerates missing or malformed fields)."""
        values: dict[str, Any] = {"preferred_symbols": []}
        if symbols := raw.get("preferred_symbols"):
            with contextlib.suppress(json.JSONDecodeError):
                decoded = json.loads(symbols)
                if isinstance(decoded, list):
                    values["preferred_symbols"] = [s for s in decoded if isinstance(s, str)]
        for name in ("alert_threshold", "portfolio_size", "updated_at"):
            if (text := raw.get(name)) not in (None, ""):
                with contextlib.suppress(ValueError, TypeError):
                    values[name] = float(text)
        values["notes"] = raw.get("notes") or None
        values["currency"] = raw.get("currency") or None
        values["symbol_alerts"] = _symbol_alerts(raw)
        return Profile(**values)

    def set_field(self, user_id: str, name: str, value: Any) -> Profile:
        """Set one field from text or a number; `None` or "" clears it."""
        key = self.keys.profile(user_id)
        if name not in SETTABLE_PROFILE_FIELDS:
            raise InvalidInput(
                f"unknown profile field {name!r}",
                fix=f"use one of: {', '.join(SETTABLE_PROFILE_FIELDS)}",
            )
        if isinstance(value, list) and len(value) == 1:  # `preferred_symbols none` clears too
            value = value[0] if str(value[0]).strip().lower() in _CLEAR_WORDS else value
        if value is None or (isinstance(value, str) and value.strip().lower() in _CLEAR_WORDS):
            with translated(self.client, key=key, keys=self.keys):
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
        elif name == "currency":
            encoded = parse_currency(str(value))
        else:
            text = str(value).strip()
            if len(text) > MAX_NOTES:
                raise InvalidInput(f"notes are limited to {MAX_NOTES} characters, got {len(text)}")
            encoded = text
        with translated(self.client, key=key, keys=self.keys):
            self.client.hset(key, mapping={name: encoded, "updated_at": repr(time.time())})
        return self.get(user_id)

    def _change(self, user_id: str, op: str, symbols: list[str] | str) -> Profile:
        parsed = parse_symbols(symbols)
        if not parsed:
            raise InvalidInput("no symbol given", fix="e.g. `add-symbol AAPL MSFT`")
        if op == "add" and len(parsed) > MAX_SYMBOLS:
            raise InvalidInput(f"at most {MAX_SYMBOLS} preferred symbols", fix="remove some first")
        import redis

        key = self.keys.profile(user_id)
        try:
            with translated(self.client, key=key, keys=self.keys):
                self._change_symbols(keys=[key], args=[op, repr(time.time()), MAX_SYMBOLS, *parsed])
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

    def set_symbol_alert(self, user_id: str, symbol: str, threshold: str | float) -> Profile:
        """Give `symbol` its own drop threshold (it wins over `alert_threshold` for it). One
        hash field per symbol (`symbol_alert:NVDA`), so concurrent changes never collide."""
        alert = parse_symbol_alert(symbol, threshold)
        key = self.keys.profile(user_id)
        field = f"{SYMBOL_ALERT_FIELD}{alert.symbol}"
        with translated(self.client, key=key, keys=self.keys):
            names = [n for n in self.client.hkeys(key) if str(n).startswith(SYMBOL_ALERT_FIELD)]
            if field not in names and len(names) >= MAX_SYMBOLS:
                raise InvalidInput(
                    f"at most {MAX_SYMBOLS} symbol alerts", fix="clear some first (clear-alert)"
                )
            self.client.hset(
                key, mapping={field: repr(alert.threshold), "updated_at": repr(time.time())}
            )
        return self.get(user_id)

    def clear_symbol_alert(self, user_id: str, symbol: str) -> bool:
        """Remove `symbol`'s own threshold; False when it had none."""
        key = self.keys.profile(user_id)
        field = f"{SYMBOL_ALERT_FIELD}{normalize_symbol(symbol)}"
        with translated(self.client, key=key, keys=self.keys):
            removed = bool(self.client.hdel(key, field))
            if removed:
                self.client.hset(key, "updated_at", repr(time.time()))
        return removed

    def reset(self, user_id: str) -> bool:
        """Delete the profile (whatever it holds, so a damaged one goes too)."""
        key = self.keys.profile(user_id)
        with translated(self.client, key=key, keys=self.keys):
            return bool(self.client.delete(key))


_CLEAR_WORDS = ("", "none", "null")

# Per-symbol thresholds: one hash field each, `symbol_alert:{SYMBOL}` -> "-0.03".
SYMBOL_ALERT_FIELD = "symbol_alert:"


def _symbol_alerts(raw: dict[str, str]) -> tuple[SymbolAlert, ...]:
    """The per-symbol thresholds of a raw profile hash, by symbol; a field whose symbol or
    value is not valid (written by hand) is skipped, never applied."""
    found: list[SymbolAlert] = []
    for name, value in raw.items():
        if isinstance(name, str) and name.startswith(SYMBOL_ALERT_FIELD):
            with contextlib.suppress(InvalidInput, TypeError):
                found.append(parse_symbol_alert(name[len(SYMBOL_ALERT_FIELD) :], value))
    return tuple(sorted(found, key=lambda a: a.symbol))
