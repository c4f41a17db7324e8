"""A circuit breaker whose state lives in Redis, so every worker of every instance agrees."""

from __future__ import annotations

import logging
import uuid

from .lua import LUA_NOW, as_text

log = logging.getLogger(__name__)

STATE_KEY = "ai:breaker"
PROBE_KEY = "ai:breaker:probe"

# KEYS: state hash, probe key. ARGV: cooldown_ms, probe_ms, token. Returns {allowed, state, is_probe}.
ALLOW = (
    LUA_NOW
    + """
local state = redis.call('HGET', KEYS[1], 'state') or 'CLOSED'
if state == 'CLOSED' then return {1, 'CLOSED', 0} end
local opened = tonumber(redis.call('HGET', KEYS[1], 'opened_at') or '0')
if now < opened + tonumber(ARGV[1]) then return {0, 'OPEN', 0} end
if redis.call('SET', KEYS[2], ARGV[3], 'NX', 'PX', tonumber(ARGV[2])) then
  redis.call('HSET', KEYS[1], 'state', 'HALF_OPEN')
  return {1, 'HALF_OPEN', 1}
end
return {0, 'HALF_OPEN', 0}
"""
)

# KEYS: state hash, probe key. ARGV: token ('' when not a probe). Returns the new state.
SUCCESS = """
local state = redis.call('HGET', KEYS[1], 'state') or 'CLOSED'
if state == 'CLOSED' then redis.call('HSET', KEYS[1], 'failures', 0) return 'CLOSED' end
if ARGV[1] ~= '' and redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('HSET', KEYS[1], 'state', 'CLOSED', 'failures', 0)
  redis.call('DEL', KEYS[2])
  return 'CLOSED'
end
return state
"""

# KEYS: state hash, probe key. ARGV: threshold, token ('' when not a probe). Returns the new state.
FAILURE = (
    LUA_NOW
    + """
local state = redis.call('HGET', KEYS[1], 'state') or 'CLOSED'
if ARGV[2] ~= '' and redis.call('GET', KEYS[2]) == ARGV[2] then
  redis.call('HSET', KEYS[1], 'state', 'OPEN', 'opened_at', now)
  redis.call('HINCRBY', KEYS[1], 'opened_count', 1)
  redis.call('DEL', KEYS[2])
  return 'OPEN'
end
if state ~= 'CLOSED' then return state end
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
if failures >= tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'state', 'OPEN', 'opened_at', now)
  redis.call('HINCRBY', KEYS[1], 'opened_count', 1)
  return 'OPEN'
end
return 'CLOSED'
"""
)

# KEYS: state hash. ARGV: cooldown_ms. Returns the state as callers would see it now.
READ = (
    LUA_NOW
    + """
local state = redis.call('HGET', KEYS[1], 'state') or 'CLOSED'
if state == 'OPEN' then
  local opened = tonumber(redis.call('HGET', KEYS[1], 'opened_at') or '0')
  if now >= opened + tonumber(ARGV[1]) then return 'HALF_OPEN' end
end
return state
"""
)


class BreakerOpen(Exception):
    """The breaker refused the call: go straight to the fallback."""


class Breaker:
    """CLOSED -> OPEN after `failures` in a row -> HALF_OPEN after `cooldown` (one probe) -> CLOSED."""

    def __init__(self, redis_client, failures: int, cooldown_seconds: float, probe_seconds: float):
        self.redis = redis_client
        self.failures = failures
        self.cooldown_ms = int(cooldown_seconds * 1000)
        self.probe_ms = int(probe_seconds * 1000)
        self._allow = redis_client.register_script(ALLOW)
        self._success = redis_client.register_script(SUCCESS)
        self._failure = redis_client.register_script(FAILURE)
        self._read = redis_client.register_script(READ)

    def allow(self) -> str | None:
        """Return '' (normal call) or a probe token when the call may go; raise BreakerOpen otherwise."""
        token = uuid.uuid4().hex
        allowed, _state, is_probe = self._allow(
            keys=[STATE_KEY, PROBE_KEY], args=[self.cooldown_ms, self.probe_ms, token]
        )
        if not int(allowed):
            raise BreakerOpen()
        return token if int(is_probe) else ""

    def record_success(self, token: str) -> str:
        return as_text(self._success(keys=[STATE_KEY, PROBE_KEY], args=[token]))

    def record_failure(self, token: str) -> str:
        state = as_text(self._failure(keys=[STATE_KEY, PROBE_KEY], args=[self.failures, token]))
        if state == "OPEN":
            log.warning("ai.breaker_open", extra={"probe": bool(token)})
        return state

    def state(self) -> str:
        return as_text(self._read(keys=[STATE_KEY], args=[self.cooldown_ms]))

    def is_open(self) -> bool:
        """Open and still cooling down (HALF_OPEN lets callers try for the probe)."""
        return self.state() == "OPEN"

    def force_close(self) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(STATE_KEY, mapping={"state": "CLOSED", "failures": 0})
        pipe.delete(PROBE_KEY)
        pipe.execute()
