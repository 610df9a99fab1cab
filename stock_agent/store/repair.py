"""What `stock-agent doctor` checks and `doctor --repair` fixes in one user's stored data.

- Access: a real probe on this user's keys (write, read, script, delete a short-lived key;
  read the profile and the sessions index; write a cache lock), so an ACL on the wrong keys is
  "not usable", never "ok". Two round trips with the data check, however many keys exist.
- Data: another Redis type at the profile, the sessions index or a messages key; message
  entries that do not decode (the read skips them with a warning).
- Repair: a damaged key is renamed aside (`<key>:corrupt:<time>`, kept `ASIDE_TTL` seconds:
  nothing vanishes unseen), unreadable entries move to such a key, and the sessions index is
  rebuilt from the user's messages keys. Finding those keys needs a SCAN over this user's
  prefix: an admin command, never a request path.

No LangChain here: whether an entry decodes is decided by the `readable` function passed in
(the history module's, given by the App).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from stock_agent.store.errors import (
    classify,
    is_wrong_type,
    redis_user,
    relay,
    translated,
    type_name,
)
from stock_agent.store.keys import ASIDE_TTL, is_valid_id

if TYPE_CHECKING:
    import redis

    from stock_agent.store.keys import KeySpace

OK, WARN, FAIL = "ok", "warn", "FAIL"
Readable = Callable[[Any], bool]
_PROBE_TTL_MS = 60_000
_SCAN_COUNT = 1000
_MAX_CHECKED_SESSIONS = 50
# Rename a damaged key aside only if it still holds the type seen, so a key rewritten by the
# app in the meantime is left alone. KEYS[1] = key, KEYS[2] = aside; ARGV = type, ttl.
_SET_ASIDE = """
if redis.call('TYPE', KEYS[1]).ok ~= ARGV[1] then return 0 end
redis.call('RENAME', KEYS[1], KEYS[2])
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[2]))
return 1
"""
_PROBE_SCRIPT = "return redis.call('DEL', KEYS[1])"


@dataclass(frozen=True)
class Check:
    """One line of `doctor`: ok, warn or FAIL, and what was found (with the fix)."""

    state: str
    text: str


@dataclass(frozen=True)
class UserCheck:
    access: Check
    data: Check


@dataclass
class RepairReport:
    """What `doctor --repair` did: one line per change; `ok` is False if a change failed."""

    lines: list[str] = field(default_factory=list)
    ok: bool = True
    changed: int = 0


# -- doctor -----------------------------------------------------------------------------------


def check_user(
    client: redis.Redis, keys: KeySpace, user_id: str, *, readable: Readable
) -> UserCheck:
    """The access probe and the data check of `user_id` (two round trips)."""
    probe, profile, index = keys.probe(user_id), keys.profile(user_id), keys.sessions(user_id)
    cache_probe = keys.cache_probe()
    pipe = client.pipeline(transaction=False)
    pipe.set(probe, "1", px=_PROBE_TTL_MS)  # 0 write
    pipe.get(probe)  # 1 read
    # 2 scripts on this user's keys (a turn is saved so); a raw EVAL: cluster pipelines refuse .eval()
    pipe.execute_command("EVAL", _PROBE_SCRIPT, 1, probe)  # type: ignore[no-untyped-call]
    pipe.delete(probe)  # 3 gone even if the script was refused
    pipe.hgetall(profile)  # 4
    pipe.zrange(index, 0, _MAX_CHECKED_SESSIONS - 1, desc=True)  # 5
    pipe.set(cache_probe, "1", nx=True, px=_PROBE_TTL_MS)  # 6 the cache (tools work without)
    pipe.delete(cache_probe)  # 7
    pipe.type(profile)  # 8
    pipe.type(index)  # 9
    with translated(client, keys=keys):
        replies = pipe.execute(raise_on_error=False)
    import redis

    access = _access(client, keys, user_id, replies)
    if any(isinstance(r, redis.exceptions.NoPermissionError) for r in (replies[4], replies[5])):
        return UserCheck(access, Check(WARN, "not checked: this Redis user may not read them"))
    return UserCheck(access, _data(client, keys, user_id, replies, readable))


_WHAT = {0: "write", 1: "read", 2: "run scripts on", 4: "read", 5: "read"}


def _access(client: redis.Redis, keys: KeySpace, user_id: str, replies: list[Any]) -> Check:
    import redis

    user = redis_user(client)
    scope = f"{keys.messages_prefix(user_id)}*"
    denied: list[str] = []
    for i, reply in enumerate(replies[:6]):
        if i == 3 or not isinstance(reply, BaseException) or is_wrong_type(reply):
            continue  # the cleanup DEL; damaged data is the data check's finding
        if isinstance(reply, redis.exceptions.NoPermissionError):
            what = _WHAT[i]
            if what not in denied:
                denied.append(what)
            continue
        typed = classify(reply, client=client, keys=keys)
        return Check(FAIL, f"the store refuses {user_id}'s keys: {typed or relay(reply, client)}")
    if denied:
        return Check(
            FAIL,
            f"Redis user {user!r} may not {', '.join(denied)} {scope} (ACL): the store is not "
            f"usable for {user_id} (grant `ACL SETUSER {user} ~{keys.acl_pattern()} +@read "
            "+@write +@keyspace +@scripting`, or use a Redis user that may)",
        )
    text = f"Redis user {user!r} may read, write and run scripts on {scope}"
    cache_reply = replies[6]
    if isinstance(cache_reply, BaseException):
        why = classify(cache_reply, client=client, keys=keys) or relay(cache_reply, client)
        return Check(WARN, f"{text}; the cache is not usable ({why}): tools fetch every time")
    return Check(OK, text)


def _data(
    client: redis.Redis, keys: KeySpace, user_id: str, replies: list[Any], readable: Readable
) -> Check:
    profile, index = keys.profile(user_id), keys.sessions(user_id)
    damaged = [
        f"{key} holds {type_name(found)}, not {type_name(keys.expected_type(key))}"
        for key, found in ((profile, replies[8]), (index, replies[9]))
        if isinstance(found, str) and found not in ("none", keys.expected_type(key))
    ]
    sessions = replies[5] if isinstance(replies[5], list) else []
    messages = [keys.messages(user_id, s) for s in sessions if is_valid_id(s)]
    unreadable: list[str] = []
    if messages:
        pipe = client.pipeline(transaction=False)
        for key in messages:
            pipe.type(key)
            pipe.lrange(key, 0, -1)
        with translated(client, keys=keys):
            found = pipe.execute(raise_on_error=False)
        for i, key in enumerate(messages):
            kind, items = found[2 * i], found[2 * i + 1]
            if isinstance(kind, str) and kind not in ("none", "list"):
                damaged.append(f"{key} holds {type_name(kind)}, not a list")
            elif isinstance(items, list) and (bad := sum(1 for m in items if not readable(m))):
                unreadable.append(f"{bad} unreadable message(s) in {key} (skipped when read)")
    fix = f"run `stock-agent doctor --repair --user {user_id}`"
    if damaged:
        return Check(FAIL, "; ".join(damaged + unreadable) + f" ({fix})")
    if unreadable:
        return Check(WARN, "; ".join(unreadable) + f" ({fix})")
    return Check(
        OK, f"profile, sessions index and {len(messages)} session(s) of {user_id} are readable"
    )


# -- doctor --repair ---------------------------------------------------------------------------


def repair(
    client: redis.Redis,
    keys: KeySpace,
    user_ids: Iterable[str] | None,
    *,
    readable: Readable,
    session_ttl: int,
    clock: Callable[[], float] = time.time,
) -> RepairReport:
    """Repair the stored data of `user_ids` (None: every user of this agent, from one SCAN of
    the agent's prefix). Raises the typed store error when Redis refuses the SCAN itself."""
    report = RepairReport()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(clock()))
    with translated(client, keys=keys):
        if user_ids is None:
            found = _all_users(client, keys)
        else:
            found = {user: _user_sessions(client, keys, user) for user in user_ids}
        for user, sessions in sorted(found.items()):
            _repair_user(client, keys, user, sorted(sessions), readable, session_ttl, stamp,
                         clock(), report)  # fmt: skip
    if user_ids is None and not found:
        report.lines.append(f"nothing to repair: agent {keys.agent_id} has no users' keys")
    return report


def _user_sessions(client: redis.Redis, keys: KeySpace, user_id: str) -> set[str]:
    sessions: set[str] = set()
    for key in client.scan_iter(match=keys.user_messages_pattern(user_id), count=_SCAN_COUNT):
        parts = keys.split(key)
        if parts is not None and parts[0] == user_id and parts[1] is not None:
            sessions.add(parts[1])
    return sessions


def _all_users(client: redis.Redis, keys: KeySpace) -> dict[str, set[str]]:
    users: dict[str, set[str]] = {}
    for key in client.scan_iter(match=keys.agent_pattern(), count=_SCAN_COUNT):
        parts = keys.split(key)
        if parts is None:
            continue
        sessions = users.setdefault(parts[0], set())
        if parts[1] is not None:
            sessions.add(parts[1])
    return users


def _repair_user(
    client: redis.Redis,
    keys: KeySpace,
    user_id: str,
    sessions: list[str],
    readable: Readable,
    session_ttl: int,
    stamp: str,
    now: float,
    report: RepairReport,
) -> None:
    profile, index = keys.profile(user_id), keys.sessions(user_id)
    message_keys = [keys.messages(user_id, s) for s in sessions]
    pipe = client.pipeline(transaction=False)
    pipe.type(profile)
    pipe.type(index)
    for key in message_keys:
        pipe.type(key)
        pipe.pttl(key)
        pipe.lrange(key, 0, -1)
    replies = pipe.execute(raise_on_error=False)
    for reply in replies:
        if isinstance(reply, BaseException) and not is_wrong_type(reply):
            raise classify(reply, client=client, keys=keys) or reply
    before = report.changed

    for key, found in ((profile, replies[0]), (index, replies[1])):
        if found not in ("none", keys.expected_type(key)):
            _set_aside(client, keys, key, str(found), stamp, report)
    index_rebuilt = replies[1] not in ("none", "zset")

    live: dict[str, float] = {}  # session id -> last activity, for the index
    for i, (session_id, key) in enumerate(zip(sessions, message_keys, strict=True)):
        kind, pttl, items = replies[2 + 3 * i : 5 + 3 * i]
        if kind == "none":
            continue
        if kind != "list":
            _set_aside(client, keys, key, str(kind), stamp, report)
            continue
        bad = [item for item in items if not readable(item)]
        if bad and not _move_entries(client, keys, key, bad, stamp, report):
            continue
        if len(items) > len(bad):
            # A read or write slides the TTL to the full session TTL: what is left of it says
            # when the session was last used.
            left = pttl / 1000 if isinstance(pttl, int) and pttl > 0 else session_ttl
            live[session_id] = min(now, now - (session_ttl - left))

    _rebuild_index(client, keys, index, live, session_ttl, index_rebuilt, report)
    if report.changed == before:
        report.lines.append(
            f"nothing to repair for {user_id} (profile, sessions index, {len(sessions)} session(s))"
        )


def _set_aside(
    client: redis.Redis, keys: KeySpace, key: str, found: str, stamp: str, report: RepairReport
) -> None:
    aside = keys.aside(key, stamp)
    expected = type_name(keys.expected_type(key))
    try:
        moved = client.eval(_SET_ASIDE, 2, key, aside, found, ASIDE_TTL)
    except Exception as exc:
        report.ok = False
        why = classify(exc, client=client, keys=keys) or relay(exc, client)
        report.lines.append(f"could not set {key} aside: {why}")
        return
    if not moved:
        report.lines.append(f"left {key} alone: it changed while being repaired")
        return
    report.changed += 1
    report.lines.append(
        f"set aside {key} ({type_name(found)}, not {expected}) as {aside} (kept {_days()})"
    )


def _move_entries(
    client: redis.Redis,
    keys: KeySpace,
    key: str,
    bad: list[Any],
    stamp: str,
    report: RepairReport,
) -> bool:
    aside = keys.aside(key, stamp)
    pipe = client.pipeline(transaction=True)
    pipe.rpush(aside, *bad)
    pipe.expire(aside, ASIDE_TTL)
    for item in dict.fromkeys(bad):
        pipe.lrem(key, 0, item)
    try:
        pipe.execute()
    except Exception as exc:
        report.ok = False
        why = classify(exc, client=client, keys=keys) or relay(exc, client)
        report.lines.append(f"could not remove unreadable entries from {key}: {why}")
        return False
    report.changed += 1
    report.lines.append(
        f"removed {len(bad)} unreadable message(s) from {key} (kept in {aside}, {_days()})"
    )
    return True


def _rebuild_index(
    client: redis.Redis,
    keys: KeySpace,
    index: str,
    live: dict[str, float],
    session_ttl: int,
    rebuilt: bool,
    report: RepairReport,
) -> None:
    """Add each live session missing from the index (every one, after a damaged index was set
    aside); scores already there are kept."""
    if not live:
        return
    try:
        scores = [None] * len(live) if rebuilt else client.zmscore(index, list(live))
        missing = {
            session: last
            for (session, last), score in zip(live.items(), scores, strict=True)
            if score is None
        }
        if not missing:
            return
        pipe = client.pipeline(transaction=True)
        pipe.zadd(index, missing, nx=True)
        pipe.expire(index, session_ttl)
        pipe.execute()
    except Exception as exc:
        report.ok = False
        why = classify(exc, client=client, keys=keys) or relay(exc, client)
        report.lines.append(f"could not rebuild {index}: {why}")
        return
    report.changed += 1
    if rebuilt:
        report.lines.append(f"rebuilt {index} from {len(missing)} session(s)")
    else:
        report.lines.append(f"added {len(missing)} session(s) missing from {index}")


def _days() -> str:
    return f"{ASIDE_TTL // 86_400} days"
