"""Redis store: the same promises as SQLite, shared by every instance behind a load balancer.

Every step that checks and then writes (record, claim, renew, release, answer, finish...) is one Lua script, so it
is atomic on the Redis server whichever instance runs it. Times that several instances compare (leases, backoffs)
are taken from the Redis server's clock (``TIME``), never from the instances' own clocks.

Keys, under a prefix (``whatsapp:`` by default):

``m:<id>``            hash   the message: sender, ts, seq, payload, state, holder, lease_until, attempts,
                             not_before, answer, reason, received_at, updated_at. Created only if absent: this
                             set-if-absent is the dedupe. No TTL while open (nothing acknowledged is lost);
                             the retention TTL once ``done`` or ``failed``.
``r:<id>``            hash   the reply log: ``n:<slot>`` parts planned, ``p:<slot>:<part>`` the part (JSON),
                             ``w:<slot>:<part>`` the wamid Graph returned.
``seq``               string arrival counter (INCR), the tie-break of equal Meta timestamps.
``q:<sender>``        zset   the customer's open messages: score = Meta timestamp, member = ``<seq:016>:<id>``,
                             so the head (rank 0) is the oldest by (timestamp, arrival); 0 once its answer has
                             begun, so that an older message redelivered meanwhile waits until every part is sent.
``ready``             zset   customers whose head is claimable now, scored by the head's timestamp.
``wait``              zset   customers with a live lease or a backoff, scored by when to look again.
``claims``            hash   customer -> the message of its current (or last unreleased) claim.
``s:<state>``         set    ids per open state (received, claimed, answered), for the counts.
``s:done``/``s:failed`` zset finished ids scored by when they finished, for counts and ``prune``.
``open``              zset   open ids scored by ``received_at`` (the oldest open age).
``rx:<sender>``       zset   the customer's messages (``qm`` members) scored by ``sent_at`` (``rate_position``), trimmed
                             to retention.
``h:<sender>``        list   conversation history, ``LTRIM``-ed to ``HISTORY_KEEP`` items, with a TTL.
``sess:<sender>``     string the customer's session (JSON: who handles it after a handoff), with the same TTL.
``media:<id>``        hash   an attachment's ``mime_type`` and ``data``, with the retention TTL;
``media-at``          zset   media ids scored by when they were kept, for ``prune``.
``w:<wamid>``         string the message a sent reply part answered (set with the part's wamid), retention TTL.
``d:<wamid>``         hash   the part's furthest delivery status: ``rank`` and ``data`` (JSON), retention TTL.
``d-at``              zset   wamids with a status, scored by when it last changed, for ``prune``.
``dfailed``           zset   wamids whose delivery failed, scored by when the status came, for ``failed``.
``a:<id>``            hash   attempt number -> what that attempt did (JSON), retention TTL.

A claim never scans keys: it moves the customers whose lease or backoff has ended from ``wait`` to ``ready``
(a range query on a sorted set) and takes the head of the first customer in ``ready``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

from ..errors import StoreUnavailable
from . import base  # the interface this store implements: its names read base.Job, base.State...

log = logging.getLogger("whatsapp.store")

DEFAULT_PREFIX = "whatsapp:"
DEFAULT_RETENTION = 7 * 86400.0  # store.retention_days
RETENTION_MARGIN = 86400.0  # finished keys outlive retention by a day: prune() removes them first, TTL is a backstop
PROMOTE_BATCH = 100  # customers moved from wait to ready per claim, at most
PRUNE_BATCH = 500


def _any_of(states: tuple[base.State, ...]) -> str:
    """A Lua condition: ``state`` is one of ``states`` (the sets are base's, as SQLite's are)."""
    return " or ".join(f"state == '{state}'" for state in states)


# Helpers shared by every script. ARGV[1] is always the key prefix.
_PRELUDE = f"""
local P = ARGV[1]
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function num(x) return string.format('%.6f', x) end
local function mkey(id) return P .. 'm:' .. id end
local function is_open(state) return {_any_of(base.OPEN_STATES)} end
local function finished(state) return {_any_of(base.FINISHED_STATES)} end

local function set_state(m, id, old, new, t)
  if old == new then return end
  if finished(old) then redis.call('ZREM', P .. 's:' .. old, id)
  elseif old then redis.call('SREM', P .. 's:' .. old, id) end
  if finished(new) then redis.call('ZADD', P .. 's:' .. new, num(t), id)
  else redis.call('SADD', P .. 's:' .. new, id) end
  redis.call('HSET', m, 'state', new)
end

-- Put a customer where it belongs: in ready (its head is claimable now), in wait (until its live lease or its
-- head's backoff ends), or nowhere (nothing open).
local function evaluate(sender, t)
  local head = redis.call('ZRANGE', P .. 'q:' .. sender, 0, 0, 'WITHSCORES')
  if #head == 0 then
    redis.call('ZREM', P .. 'ready', sender)
    redis.call('ZREM', P .. 'wait', sender)
    return
  end
  local wake = 0
  local cid = redis.call('HGET', P .. 'claims', sender)
  if cid then
    local c = redis.call('HMGET', mkey(cid), 'holder', 'lease_until', 'state')
    if c[1] and is_open(c[3]) and tonumber(c[2]) >= t then wake = tonumber(c[2]) end
  end
  if wake == 0 then
    local not_before = tonumber(redis.call('HGET', mkey(string.sub(head[1], 18)), 'not_before') or '0')
    if not_before > t then wake = not_before end
  end
  if wake > 0 then
    redis.call('ZREM', P .. 'ready', sender)
    redis.call('ZADD', P .. 'wait', num(wake), sender)
  else
    redis.call('ZREM', P .. 'wait', sender)
    redis.call('ZADD', P .. 'ready', head[2], sender)
  end
end

-- Take a claim away from its holder (the message stays open, claimable by anyone).
local function unclaim(m, id, state, t)
  if state == 'claimed' then set_state(m, id, 'claimed', 'received', t) end
  redis.call('HDEL', m, 'holder')
  redis.call('HSET', m, 'lease_until', 0, 'updated_at', num(t))
end
"""

# ARGV: prefix, retention seconds, then (id, sender, ts, payload, received_at) per message.
_RECORD = """
local t = clock()
local keep = tonumber(ARGV[2])
local created = {}
for i = 3, #ARGV, 5 do
  local id, sender, ts, payload, received_at = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local m = mkey(id)
  if redis.call('EXISTS', m) == 1 then
    created[#created + 1] = 0
  else
    local seq = redis.call('INCR', P .. 'seq')
    local member = string.format('%016d', seq) .. ':' .. id
    redis.call('HSET', m, 'id', id, 'sender', sender, 'ts', ts, 'seq', seq, 'qm', member, 'payload', payload,
      'state', 'received', 'attempts', 0, 'lease_until', 0, 'not_before', 0, 'received_at', received_at,
      'updated_at', num(t))
    redis.call('SADD', P .. 's:received', id)
    redis.call('ZADD', P .. 'open', received_at, id)
    redis.call('ZADD', P .. 'q:' .. sender, ts, member)
    local rx = P .. 'rx:' .. sender
    local sent = tonumber(received_at)  -- store.base.sent_at: Meta's timestamp, never later than the arrival
    if tonumber(ts) > 0 and tonumber(ts) < sent then sent = tonumber(ts) end
    redis.call('ZADD', rx, sent, member)  -- member: the zero-padded seq, so one second's messages rank by arrival
    redis.call('ZREMRANGEBYSCORE', rx, '-inf', '(' .. num(tonumber(received_at) - keep))
    redis.call('EXPIRE', rx, math.ceil(keep))
    evaluate(sender, t)
    created[#created + 1] = 1
  end
end
return created
"""

# ARGV: prefix, holder, lease seconds, promote batch. Returns the claimed message's hash, or nil.
_CLAIM = """
local holder, lease = ARGV[2], tonumber(ARGV[3])
local t = clock()
for _, sender in ipairs(redis.call('ZRANGEBYSCORE', P .. 'wait', '-inf', t, 'LIMIT', 0, tonumber(ARGV[4]))) do
  evaluate(sender, t)
end
for _ = 1, 16 do
  local top = redis.call('ZRANGE', P .. 'ready', 0, 0)
  if #top == 0 then return false end
  local sender = top[1]
  evaluate(sender, t)
  if redis.call('ZSCORE', P .. 'ready', sender) then
    local id = string.sub(redis.call('ZRANGE', P .. 'q:' .. sender, 0, 0)[1], 18)
    local m = mkey(id)
    local previous = redis.call('HGET', P .. 'claims', sender)
    if previous and previous ~= id then
      -- an expired claim on another message of this customer: its holder must not come back to it
      local pm = mkey(previous)
      local pstate = redis.call('HGET', pm, 'state')
      if is_open(pstate) then unclaim(pm, previous, pstate, t) end
    end
    local state = redis.call('HGET', m, 'state')
    if state == 'received' then set_state(m, id, 'received', 'claimed', t) end
    redis.call('HSET', m, 'holder', holder, 'lease_until', num(t + lease), 'updated_at', num(t))
    redis.call('HINCRBY', m, 'attempts', 1)
    redis.call('HSET', P .. 'claims', sender, id)
    evaluate(sender, t)
    return redis.call('HGETALL', m)
  end
end
return false
"""

# ARGV: prefix, lease seconds, then (id, holder) per claim. Returns the ids whose holder still holds them.
_RENEW = """
local lease = tonumber(ARGV[2])
local t = clock()
local held = {}
for i = 3, #ARGV, 2 do
  local m = mkey(ARGV[i])
  local c = redis.call('HMGET', m, 'holder', 'state', 'sender')
  if c[1] == ARGV[i + 1] and is_open(c[2]) then
    redis.call('HSET', m, 'lease_until', num(t + lease))
    evaluate(c[3], t)
    held[#held + 1] = ARGV[i]
  end
end
return held
"""

# ARGV: prefix, id, holder, refund (0/1), delay (negative: none), reason. Returns 1 if released.
_RELEASE = """
local id, holder, delay = ARGV[2], ARGV[3], tonumber(ARGV[5])
local m = mkey(id)
local c = redis.call('HMGET', m, 'holder', 'state', 'sender')
if c[1] ~= holder or not is_open(c[2]) then return 0 end
local t = clock()
unclaim(m, id, c[2], t)
if ARGV[4] == '1' then redis.call('HINCRBY', m, 'attempts', -1) end
if delay >= 0 then redis.call('HSET', m, 'not_before', num(t + delay), 'reason', ARGV[6]) end
if redis.call('HGET', P .. 'claims', c[3]) == id then redis.call('HDEL', P .. 'claims', c[3]) end
evaluate(c[3], t)
return 1
"""

# ARGV: prefix, id, holder, sender, answer, keep, history ttl, session JSON ('' for none), turns...
# Returns 1 if saved; a holder that lost its claim changes nothing.
_SAVE_ANSWER = """
local id, holder, sender = ARGV[2], ARGV[3], ARGV[4]
local m = mkey(id)
local c = redis.call('HMGET', m, 'holder', 'state', 'qm')
if c[1] ~= holder or not is_open(c[2]) then return 0 end
local t = clock()
local ttl = math.ceil(tonumber(ARGV[7]))
set_state(m, id, c[2], 'answered', t)
redis.call('ZADD', P .. 'q:' .. sender, 0, c[3])  -- a begun answer heads its customer's queue until it is sent
redis.call('HSET', m, 'answer', ARGV[5], 'updated_at', num(t))
if ARGV[8] ~= '' then redis.call('SET', P .. 'sess:' .. sender, ARGV[8], 'EX', ttl) end
if #ARGV >= 9 then
  local h = P .. 'h:' .. sender
  for i = 9, #ARGV do redis.call('RPUSH', h, ARGV[i]) end
  redis.call('LTRIM', h, -tonumber(ARGV[6]), -1)
  redis.call('EXPIRE', h, ttl)
end
return 1
"""

# ARGV: prefix, id, slot, parts (JSON)... Returns part, wamid, part, wamid... of the slot's plan.
_PLAN_REPLIES = """
local r = P .. 'r:' .. ARGV[2]
local slot = ARGV[3]
if redis.call('HEXISTS', r, 'n:' .. slot) == 0 and #ARGV >= 4 then
  redis.call('HSET', r, 'n:' .. slot, #ARGV - 3)
  for i = 4, #ARGV do redis.call('HSET', r, 'p:' .. slot .. ':' .. (i - 4), ARGV[i]) end
end
local planned = {}
for part = 0, tonumber(redis.call('HGET', r, 'n:' .. slot) or '0') - 1 do
  local fields = redis.call('HMGET', r, 'p:' .. slot .. ':' .. part, 'w:' .. slot .. ':' .. part)
  planned[#planned + 1] = fields[1]
  planned[#planned + 1] = fields[2]
end
return planned
"""

# ARGV: prefix, id, slot, part, wamid, ttl of the wamid -> message lookup.
_MARK_SENT = """
local r = P .. 'r:' .. ARGV[2]
local part = ARGV[3] .. ':' .. ARGV[4]
if redis.call('HEXISTS', r, 'p:' .. part) == 0 then return 0 end
redis.call('HSET', r, 'w:' .. part, ARGV[5], 's:' .. part, num(clock()))
redis.call('SET', P .. 'w:' .. ARGV[5], ARGV[2], 'EX', math.ceil(tonumber(ARGV[6])))
return 1
"""

# ARGV: prefix, id, holder, state, has reason (0/1), reason, ttl. Returns 1 if finished.
_FINISH = """
local id, holder = ARGV[2], ARGV[3]
local m = mkey(id)
local c = redis.call('HMGET', m, 'holder', 'state', 'sender', 'qm')
if c[1] ~= holder or not is_open(c[2]) then return 0 end
local t = clock()
set_state(m, id, c[2], ARGV[4], t)
redis.call('HDEL', m, 'holder')
redis.call('HSET', m, 'lease_until', 0, 'updated_at', num(t))
if ARGV[5] == '1' then redis.call('HSET', m, 'reason', ARGV[6]) end
redis.call('ZREM', P .. 'open', id)
redis.call('ZREM', P .. 'q:' .. c[3], c[4])
if redis.call('HGET', P .. 'claims', c[3]) == id then redis.call('HDEL', P .. 'claims', c[3]) end
evaluate(c[3], t)
local ttl = math.ceil(tonumber(ARGV[7]))
redis.call('EXPIRE', m, ttl)
redis.call('EXPIRE', P .. 'r:' .. id, ttl)
return 1
"""

# ARGV: prefix, id. Returns 1 if a done or failed message was put back to received.
_REQUEUE = """
local id = ARGV[2]
local m = mkey(id)
local c = redis.call('HMGET', m, 'state', 'sender', 'ts', 'qm', 'received_at')
if not finished(c[1]) then return 0 end
local t = clock()
set_state(m, id, c[1], 'received', t)
redis.call('HDEL', m, 'holder', 'answer', 'reason')
redis.call('HSET', m, 'lease_until', 0, 'attempts', 0, 'not_before', 0, 'updated_at', num(t))
redis.call('PERSIST', m)
redis.call('DEL', P .. 'r:' .. id, P .. 'a:' .. id)
redis.call('ZADD', P .. 'open', c[5], id)
redis.call('ZADD', P .. 'q:' .. c[2], c[3], c[4])
evaluate(c[2], t)
return 1
"""

# ARGV: prefix, older than (unix seconds), batch. Returns {finished messages deleted, media deleted}.
_PRUNE = """
local deleted = 0
for _, state in ipairs({'done', 'failed'}) do
  local index = P .. 's:' .. state
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', index, '-inf', '(' .. ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))) do
    redis.call('DEL', mkey(id), P .. 'r:' .. id, P .. 'a:' .. id)
    redis.call('ZREM', index, id)
    deleted = deleted + 1
  end
end
local media = redis.call('ZRANGEBYSCORE', P .. 'media-at', '-inf', '(' .. ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(media) do
  redis.call('DEL', P .. 'media:' .. id)
  redis.call('ZREM', P .. 'media-at', id)
end
return {deleted, #media}
"""

# ARGV: prefix, ttl, then (wamid, rank, data JSON, failed 0/1) per status. A status replaces a lower-ranked one only.
_RECORD_DELIVERIES = """
local ttl = math.ceil(tonumber(ARGV[2]))
local t = clock()
for i = 3, #ARGV, 4 do
  local key = P .. 'd:' .. ARGV[i]
  local rank = tonumber(ARGV[i + 1])
  if rank > tonumber(redis.call('HGET', key, 'rank') or '-1') then
    redis.call('HSET', key, 'rank', rank, 'data', ARGV[i + 2])
    redis.call('EXPIRE', key, ttl)
    redis.call('ZADD', P .. 'd-at', num(t), ARGV[i])
    if ARGV[i + 3] == '1' then redis.call('ZADD', P .. 'dfailed', num(t), ARGV[i]) end
  end
end
return 1
"""


class RedisStore(base.Store):
    """The store on one Redis (or a managed Redis: Heroku, Render, Upstash...), shared by every instance.

    Needs a Redis that keeps what it acknowledged (append-only file) and never evicts keys
    (``maxmemory-policy noeviction``); :meth:`__init__` logs a warning when it can see that it does not.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        retention_seconds: float = DEFAULT_RETENTION,
        history_ttl: float = base.HISTORY_TTL,
        socket_timeout: float = 5.0,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.retention_seconds = retention_seconds
        self.history_ttl = history_ttl
        # One pool per process; redis-py notices a fork and gives the child fresh connections.
        self._client = redis.Redis.from_url(
            url,
            socket_connect_timeout=2.0,
            socket_timeout=socket_timeout,
            health_check_interval=15,
            retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), 2),
        )
        scripts = {
            "record": _RECORD,
            "claim": _CLAIM,
            "renew": _RENEW,
            "release": _RELEASE,
            "save_answer": _SAVE_ANSWER,
            "plan_replies": _PLAN_REPLIES,
            "mark_sent": _MARK_SENT,
            "finish": _FINISH,
            "requeue": _REQUEUE,
            "prune": _PRUNE,
            "record_deliveries": _RECORD_DELIVERIES,
        }
        self._scripts = {name: self._client.register_script(_PRELUDE + body) for name, body in scripts.items()}
        self._check_server()

    # plumbing ----------------------------------------------------------------------------------------------------

    @contextmanager
    def _redis(self) -> Iterator[redis.Redis]:
        """Any Redis failure (unreachable, timeout, out of memory, read-only) becomes :class:`StoreUnavailable`."""
        try:
            yield self._client
        except redis.RedisError as error:
            raise StoreUnavailable(f"Redis store {self._where()}: {error}") from error

    def _run(self, name: str, *args: Any) -> Any:
        with self._redis():
            return self._scripts[name](keys=[], args=[self.prefix, *args])

    def _where(self) -> str:
        kwargs = self._client.connection_pool.connection_kwargs
        return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"

    def _check_server(self) -> None:
        """Warn about a Redis that could lose recorded messages; say nothing if it cannot be asked yet."""
        try:
            memory = self._client.info("memory")
            persistence = self._client.info("persistence")
        except redis.RedisError as error:
            log.warning(
                "Redis store %s is not reachable yet (%s); the webhook answers 503 until it is", self._where(), error
            )
            return
        policy = memory.get("maxmemory_policy")
        if memory.get("maxmemory") and policy not in (None, "noeviction"):
            log.warning("Redis maxmemory-policy is %s: Redis may evict recorded messages; use noeviction", policy)
        if not persistence.get("aof_enabled"):
            log.warning("Redis has no append-only file (appendonly no): a Redis restart can lose recorded messages")

    def _key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    @property
    def _finished_ttl(self) -> float:
        return self.retention_seconds + RETENTION_MARGIN

    # received ----------------------------------------------------------------------------------------------------

    def record(self, entries: Sequence[base.InboxEntry]) -> list[bool]:
        if not entries:
            return []
        args: list[Any] = [self.retention_seconds]
        for entry in entries:
            args += [entry.id, entry.sender, int(entry.timestamp), json.dumps(entry.payload), repr(entry.received_at)]
        return [bool(created) for created in self._run("record", *args)]

    # claimed -----------------------------------------------------------------------------------------------------

    def claim(self, holder: str, lease_seconds: float) -> base.Job | None:
        fields = self._run("claim", holder, lease_seconds, PROMOTE_BATCH)
        return base.Job.from_row(_decode(fields)) if fields else None

    def renew_all(self, claims: Mapping[str, str], lease_seconds: float) -> set[str]:
        if not claims:
            return set()
        pairs = [value for pair in claims.items() for value in pair]
        return {_text(id_) for id_ in self._run("renew", lease_seconds, *pairs)}

    def release(self, message_id: str, holder: str, *, refund_attempt: bool = False) -> None:
        self._run("release", message_id, holder, int(refund_attempt), -1, "")

    def release_holders(self, is_dead: Callable[[str], bool]) -> list[str]:
        with self._redis() as client:
            claims = {_text(k): _text(v) for k, v in client.hgetall(self._key("claims")).items()}
            if not claims:
                return []
            pipe = client.pipeline(transaction=False)
            for message_id in claims.values():
                pipe.hget(self._key("m", message_id), "holder")
            holders = pipe.execute()
        released = []
        for message_id, holder in zip(claims.values(), holders, strict=True):
            if holder is None or not is_dead(_text(holder)):
                continue
            if self._run("release", message_id, _text(holder), 0, -1, ""):
                released.append(message_id)
        return released

    def retry_later(self, message_id: str, holder: str, reason: str, delay: float) -> None:
        self._run("release", message_id, holder, 0, max(0.0, delay), reason)

    # answered ----------------------------------------------------------------------------------------------------

    def _save_answer(
        self, message_id: str, holder: str, sender: str, answer: str, turns: list[str], session: str | None
    ) -> None:
        keep = (base.HISTORY_KEEP, self.history_ttl)
        self._run("save_answer", message_id, holder, sender, answer, *keep, "" if session is None else session, *turns)

    def plan_replies(
        self, message_id: str, slot: int, recipient: str, reply_to: str | None, bodies: Sequence[str | base.Part]
    ) -> list[base.Reply]:
        parts = [json.dumps({"recipient": recipient, "reply_to": reply_to, **_planned(body)}) for body in bodies]
        flat = self._run("plan_replies", message_id, slot, *parts)
        return [_reply(message_id, slot, n, flat[2 * n], flat[2 * n + 1]) for n in range(len(flat) // 2)]

    def mark_sent(self, message_id: str, slot: int, part: int, wamid: str) -> None:
        self._run("mark_sent", message_id, slot, part, wamid, self._finished_ttl)

    # done / failed -----------------------------------------------------------------------------------------------

    def _finish(self, message_id: str, holder: str, state: base.State, reason: str | None) -> bool:
        has_reason = reason is not None
        finished = self._run("finish", message_id, holder, state, int(has_reason), reason or "", self._finished_ttl)
        return finished == 1

    # history -----------------------------------------------------------------------------------------------------

    def history(self, sender: str) -> list[dict]:
        with self._redis() as client:
            items = client.lrange(self._key("h", sender), 0, -1)
        return [json.loads(item) for item in items]

    def session(self, sender: str) -> dict[str, Any]:
        with self._redis() as client:
            data = client.get(self._key("sess", sender))
        return json.loads(data) if data else {}

    def clear_history(self, sender: str) -> None:
        with self._redis() as client:
            client.delete(self._key("h", sender), self._key("sess", sender))

    # media -------------------------------------------------------------------------------------------------------

    def save_media(self, media_id: str, mime_type: str, data: bytes) -> None:
        key = self._key("media", media_id)
        with self._redis() as client:
            pipe = client.pipeline(transaction=True)
            pipe.delete(key)
            pipe.hset(key, mapping={"mime_type": mime_type, "data": data})
            pipe.expire(key, math.ceil(self._finished_ttl))
            pipe.zadd(self._key("media-at"), {media_id: time.time()})
            pipe.execute()

    def media(self, media_id: str) -> tuple[str, bytes] | None:
        with self._redis() as client:
            fields = client.hgetall(self._key("media", media_id))
        if not fields:
            return None
        return _text(fields[b"mime_type"]), bytes(fields[b"data"])

    # operations --------------------------------------------------------------------------------------------------

    def get(self, message_id: str) -> base.StoredMessage | None:
        with self._redis() as client:
            pipe = client.pipeline(transaction=True)
            pipe.hgetall(self._key("m", message_id))
            pipe.hgetall(self._key("r", message_id))
            fields, reply_log = pipe.execute()
        if not fields:
            return None
        log_fields = {_text(k): v for k, v in reply_log.items()}
        replies = []
        for name, value in log_fields.items():
            if name.startswith("p:"):
                _, slot, part = name.split(":")
                replies.append(_reply(message_id, int(slot), int(part), value, log_fields.get(f"w:{slot}:{part}")))
        return base.StoredMessage.from_row(_decode([item for pair in fields.items() for item in pair]), replies)

    def requeue(self, message_id: str) -> bool:
        return self._run("requeue", message_id) == 1

    def rate_position(self, message_id: str, window: float) -> int:
        with self._redis() as client:
            sender, ts, received_at, member = client.hmget(
                self._key("m", message_id), "sender", "ts", "received_at", "qm"
            )
            if sender is None:
                return 0
            mine = base.sent_at(int(ts), float(received_at))
            rx = self._key("rx", _text(sender))
            pipe = client.pipeline(transaction=True)
            pipe.zrank(rx, member)  # members are ordered by (sent_at, seq): everything up to this one
            pipe.zcount(rx, "-inf", repr(mine - window))  # ...less what was sent before the window
            rank, before = pipe.execute()
        return 0 if rank is None else rank + 1 - before

    def stats(self) -> base.Stats:
        with self._redis() as client:
            pipe = client.pipeline(transaction=True)
            for state in base.OPEN_STATES:
                pipe.scard(self._key("s", state))
            for state in base.FINISHED_STATES:
                pipe.zcard(self._key("s", state))
            pipe.zrange(self._key("open"), 0, 0, withscores=True)
            *numbers, oldest = pipe.execute()
        counts = dict(zip((*base.OPEN_STATES, *base.FINISHED_STATES), numbers, strict=True))
        return base.Stats.of(counts, oldest[0][1] if oldest else None)

    def prune(self, older_than: float) -> int:
        self._prune_deliveries(older_than)
        total = 0
        while True:
            messages, media = self._run("prune", repr(older_than), PRUNE_BATCH)
            total += messages
            if messages == 0 and media == 0:
                return total

    # delivery statuses and attempts ------------------------------------------------------------------------------

    def _prune_deliveries(self, older_than: float) -> None:
        """Statuses last changed before ``older_than`` (their TTL is only a backstop)."""
        before = f"({older_than!r}"
        with self._redis() as client:
            client.zremrangebyscore(self._key("dfailed"), "-inf", before)
            while wamids := client.zrangebyscore(self._key("d-at"), "-inf", before, start=0, num=PRUNE_BATCH):
                pipe = client.pipeline(transaction=False)
                pipe.delete(*(self._key("d", _text(wamid)) for wamid in wamids))
                pipe.zrem(self._key("d-at"), *wamids)
                pipe.execute()

    def record_deliveries(self, deliveries: Sequence[base.Delivery]) -> None:
        if not deliveries:
            return
        args: list[Any] = [self._finished_ttl]
        for d in deliveries:
            data = {
                "status": d.status,
                "ts": d.timestamp,
                "recipient": d.recipient,
                "code": d.error_code,
                "title": d.error_title,
            }
            args += [d.wamid, base.DELIVERY_RANK.get(d.status, 0), json.dumps(data), int(d.status == "failed")]
        self._run("record_deliveries", *args)

    def deliveries(self, wamids: Sequence[str]) -> dict[str, base.Delivery]:
        if not wamids:
            return {}
        with self._redis() as client:
            pipe = client.pipeline(transaction=False)
            for wamid in wamids:
                pipe.hget(self._key("d", wamid), "data")
            found = pipe.execute()
        return {wamid: _delivery(wamid, data) for wamid, data in zip(wamids, found, strict=True) if data is not None}

    def failed_deliveries(self, limit: int) -> list[base.Delivery]:
        with self._redis() as client:
            wamids = [_text(w) for w in client.zrevrange(self._key("dfailed"), 0, limit - 1)]
            pipe = client.pipeline(transaction=False)
            for wamid in wamids:
                pipe.hget(self._key("d", wamid), "data")
                pipe.get(self._key("w", wamid))
            found = pipe.execute()
        return [
            _delivery(wamid, data, message_id)
            for wamid, data, message_id in zip(wamids, found[::2], found[1::2], strict=True)
            if data is not None
        ]

    def _record_attempt(self, message_id: str, number: int, data: str) -> None:
        key = self._key("a", message_id)
        with self._redis() as client:
            pipe = client.pipeline(transaction=True)
            pipe.hset(key, str(number), data)
            pipe.expire(key, math.ceil(self._finished_ttl))
            pipe.execute()

    def _attempts(self, message_id: str) -> list[str | bytes]:
        with self._redis() as client:
            fields = client.hgetall(self._key("a", message_id))
        return [fields[number] for number in sorted(fields, key=int)]

    def failed(self, limit: int) -> list[base.FailedMessage]:
        with self._redis() as client:
            ids = client.zrevrange(self._key("s", "failed"), 0, limit - 1, withscores=True)
            pipe = client.pipeline(transaction=False)
            for message_id, _ in ids:
                pipe.hmget(self._key("m", _text(message_id)), "sender", "reason")
            rows = pipe.execute()
        return [
            base.FailedMessage.from_row(
                {"id": _text(message_id), "sender": _text(sender), "reason": _text(reason), "updated_at": at}
            )
            for (message_id, at), (sender, reason) in zip(ids, rows, strict=True)
        ]

    def message_ids(self) -> Iterator[str]:
        with self._redis() as client:
            for state in base.OPEN_STATES:
                yield from (_text(member) for member in client.sscan_iter(self._key("s", state)))
            for state in base.FINISHED_STATES:
                yield from (_text(member) for member, _ in client.zscan_iter(self._key("s", state)))

    def warm_up(self) -> None:
        try:
            self._client.ping()
        except redis.RedisError:
            pass  # not reachable yet: the webhook answers 503 until it is, and says why

    def close(self) -> None:
        self._client.close()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _decode(flat: Sequence[bytes | str]) -> dict[str, str]:
    """A Lua ``HGETALL`` reply (key, value, key, value...) as a dict of text."""
    return {_text(flat[n]): _text(flat[n + 1]) for n in range(0, len(flat), 2)}


def _delivery(wamid: str, data: bytes | str, message_id: bytes | str | None = None) -> base.Delivery:
    """A status as Redis keeps it: JSON whose error fields are named ``code`` and ``title``."""
    fields = json.loads(data)
    row = {**fields, "error_code": fields["code"], "error_title": fields["title"]}
    return base.Delivery.from_row({**row, "wamid": wamid, "message_id": message_id and _text(message_id)})


def _planned(part: str | base.Part) -> dict[str, Any]:
    """A planned part's JSON fields: the body, and a rich reply's message object (absent for text)."""
    if isinstance(part, base.Part):
        return {"body": part.body, "message": part.message}
    return {"body": part}


def _reply(message_id: str, slot: int, part: int, planned: bytes | str, wamid: bytes | str | None) -> base.Reply:
    """A part of the reply log: where it stands, the part as planned (JSON) and the wamid once sent."""
    place = {"message_id": message_id, "slot": slot, "part": part, "wamid": _text(wamid) if wamid else None}
    return base.Reply.from_row({**json.loads(planned), **place})
