"""The cluster-wide waiting room in Redis: FIFO tickets and active-visitor slots, one Lua call."""

from __future__ import annotations

from dataclasses import dataclass

from ..redis_fast import FastCaller

# adm:state hash: next, served (below: admitted), capacity, pace, tokens, rate, visit_mean, claim_mean
STATE_KEY = "adm:state"
ACTIVE_KEY = "adm:active"  # sorted set: admitted ticket -> when its slot frees (ms)
ISSUED_KEY = "adm:issued"  # hash: waiting ticket -> when it was issued (ms), for the oldest wait
SERVE_BATCH = 500  # bound on slots handed out by one call (a big capacity raise spreads over calls)
ARRIVALS_KEY = "adm:arrivals:{group}:{minute}"  # cookieless arrivals of one address in one minute
WAITING, ADMITTED, REFUSED = 0, 1, 2  # the Lua call's outcomes
RATE_WINDOW_MS = 10_000  # visitors admitted per second, measured over windows of this length
PACE_DERIVED, PACE_OFF = -1, 0  # pace settings (milli-visitors/s): from the capacity, or no pacing

# One round trip decides everything: free expired slots, serve the queue head while there is
# room, then answer this visitor (admitted, or their ticket and position). Tickets are served
# strictly in issue order, so nobody who arrives later overtakes a waiting visitor.
#
# A slot is first held on probation (ARGV[6] ms): a client that never comes back, or that drops
# its cookie on every request, holds it only that long. Starting a quiz confirms it for the whole
# visit (confirm()), and submitting the quiz frees it (release()). A cookieless arrival also counts
# against its address's new-arrivals budget for the minute (KEYS[4], ARGV[7]); beyond it the
# answer is "refused" and no ticket or slot is taken, so one address cannot flood the line.
#
# Admissions are also paced by a token bucket (fields tokens, tokens_t): it refills at the pace
# (ARGV[8] milli-visitors/s, or the live field `pace`; -1 = 2 x capacity / visit seconds (ARGV[10]),
# 0 = off) up to a burst of pace x ARGV[9] seconds (at least one visitor), and every admission
# takes a token. With room but no token a visitor waits in line as when full, so a freed-up
# cluster fills smoothly instead of in one wave that then starts and submits in step.
ADMIT_LUA = """
local now = tonumber(ARGV[1])
local capacity = tonumber(redis.call('HGET', KEYS[1], 'capacity') or ARGV[2])
local ticket = tonumber(ARGV[3])
local window = tonumber(ARGV[5])
local probation = tonumber(ARGV[6])
local rate = tonumber(redis.call('HGET', KEYS[1], 'rate') or '0')
if ARGV[7] ~= '' then
  local arrivals = redis.call('INCR', KEYS[4])
  if arrivals == 1 then redis.call('PEXPIRE', KEYS[4], 120000) end
  if arrivals > tonumber(ARGV[7]) then
    return {2, -1, 0, 0, 0, capacity, rate, 0}
  end
end
local pace = tonumber(redis.call('HGET', KEYS[1], 'pace') or ARGV[8])
if pace < 0 then pace = math.floor(2000 * capacity / tonumber(ARGV[10])) end
local tokens = -1  -- micro-tokens (1e6 = one visitor); -1: not paced
local tokens_t = 0
if pace > 0 then
  local burst = math.max(1, math.floor(pace * tonumber(ARGV[9]) / 1000)) * 1000000
  tokens_t = tonumber(redis.call('HGET', KEYS[1], 'tokens_t') or '0')
  tokens = math.min(burst, tonumber(redis.call('HGET', KEYS[1], 'tokens') or burst))
  if now > tokens_t then
    -- elapsed ms x milli-visitors/s = micro-tokens: exact integers (huge gaps just fill the bucket)
    tokens = math.min(burst, tokens + (now - tokens_t) * pace)
    tokens_t = now
  end
end
local function take_tokens(n)
  if tokens >= 0 then
    tokens = tokens - n * 1000000
    redis.call('HSET', KEYS[1], 'tokens', tokens, 'tokens_t', tokens_t)
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
-- The measured admission rate (visitors per 1000 s), for the admin view and the waiting room's
-- polling budget: the last whole window, averaged with the rate before it (admissions come in
-- waves; one window alone swings widely). Wait estimates come from the slots (turn_ms below).
local rate_t = tonumber(redis.call('HGET', KEYS[1], 'rate_t') or '0')
if now - rate_t >= window then
  if rate_t > 0 then
    local n = tonumber(redis.call('HGET', KEYS[1], 'rate_n') or '0')
    local measured = math.floor(n * 1000000 / (now - rate_t))
    if rate > 0 and now - rate_t < 2 * window then measured = math.floor((rate + measured) / 2) end
    rate = measured
    redis.call('HSET', KEYS[1], 'rate', rate)
  end
  redis.call('HSET', KEYS[1], 'rate_t', now, 'rate_n', 0)
end
local active = redis.call('ZCARD', KEYS[2])
local nxt = tonumber(redis.call('HGET', KEYS[1], 'next') or '0')
local served = tonumber(redis.call('HGET', KEYS[1], 'served') or '0')
local room = capacity - active
if room > 0 and served < nxt then
  local n = math.min(room, nxt - served, tonumber(ARGV[4]))
  if tokens >= 0 then n = math.min(n, math.floor(tokens / 1000000)) end
  for i = served, served + n - 1 do
    redis.call('ZADD', KEYS[2], now + probation, 't' .. i)
    redis.call('HDEL', KEYS[3], i)
  end
  served = served + n
  active = active + n
  redis.call('HSET', KEYS[1], 'served', served)
  redis.call('HINCRBY', KEYS[1], 'admitted', n)
  redis.call('HINCRBY', KEYS[1], 'rate_n', n)
  if n > 0 then take_tokens(n) end
end
if ticket and ticket < served then
  return {1, ticket, 0, nxt - served, active, capacity, rate, pace}
end
-- When this waiting visitor's turn should come (ms from now), from the slots themselves: the
-- releases needed before it are the visitors ahead of it beyond the free room; the k-th is
-- expected when the k-th oldest visit reaches the measured mean visit length (field visit_mean,
-- kept by RELEASE_LUA; until measured, half the longest visit), a whole slot cycle later for each
-- time round the slots: a visit, plus the time from a slot's hand-out to its visitor's start
-- (field claim_mean, kept by CONFIRM_LUA; 0 until measured; 2.3 s at 4x the knee in the bench,
-- which each round past the first came out short by). A confirmed slot's score is its start +
-- the longest visit. The slots still on probation (score: handed out + the probation) sort
-- first, yet each frees only after its visitor's claim and a whole visit, after every confirmed
-- one: the estimate takes them last in the round. How many there are is the admissions of one
-- mean claim time (Little's law: the measured rate x claim_mean). Read as overdue instead, they
-- made every estimate early by that many admissions (3-4 s at 2x the knee in the bench), and a
-- visitor back early is answered again: a request for nothing, where one back a little late
-- leaves the slot idle on a cluster that is full anyway. Waves of admissions (a cluster filled
-- in one go frees in one go) show here, as a rate cannot.
local function turn_ms(position)
  local need = position - (capacity - active)
  if need <= 0 or active <= 0 then return 0 end
  local longest = tonumber(ARGV[10]) * 1000
  local mean = tonumber(redis.call('HGET', KEYS[1], 'visit_mean') or math.floor(longest / 2))
  local claim = tonumber(redis.call('HGET', KEYS[1], 'claim_mean') or '0')
  local handed = math.min(active - 1, math.floor(rate * claim / 1000000))
  local idx = (need - 1) % active
  local rounds = math.floor((need - 1) / active) * (mean + claim)
  if idx >= active - handed then return claim + mean + rounds end
  local slot = redis.call('ZRANGE', KEYS[2], idx + handed, idx + handed, 'WITHSCORES')
  return math.max(0, tonumber(slot[2]) - longest + mean - now) + rounds
end
if ticket and ticket < nxt then
  local position = ticket - served + 1
  return {0, ticket, position, nxt - served, active, capacity, rate, pace, turn_ms(position)}
end
ticket = nxt
nxt = nxt + 1
redis.call('HSET', KEYS[1], 'next', nxt)
if served == ticket and active < capacity and (tokens < 0 or tokens >= 1000000) then
  redis.call('ZADD', KEYS[2], now + probation, 't' .. ticket)
  redis.call('HSET', KEYS[1], 'served', nxt)
  redis.call('HINCRBY', KEYS[1], 'admitted', 1)
  redis.call('HINCRBY', KEYS[1], 'rate_n', 1)
  take_tokens(1)
  return {1, ticket, 0, 0, active + 1, capacity, rate, pace}
end
redis.call('HSET', KEYS[3], ticket, now)
local position = ticket - served + 1
return {0, ticket, position, nxt - served, active, capacity, rate, pace, turn_ms(position)}
"""

# A visit ended (its quiz was submitted): free its slot and fold its length into the mean visit
# length (field visit_mean, ms; a moving average over about 32 visits) that ADMIT_LUA's wait
# estimates use. A confirmed slot's score is its start + the longest visit (ARGV[3] ms).
RELEASE_LUA = """
local held = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not held then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
local longest = tonumber(ARGV[3])
local length = tonumber(ARGV[2]) - (tonumber(held) - longest)
if length > 0 and length < longest then
  local mean = tonumber(redis.call('HGET', KEYS[1], 'visit_mean') or '0')
  if mean > 0 then length = math.floor(mean + (length - mean) / 32) end
  redis.call('HSET', KEYS[1], 'visit_mean', length)
end
return 1
"""

# A quiz started: hold the visitor's slot for the whole visit, until ARGV[2] (re-taken if it
# lapsed). A slot still on probation (its score: the hand-out + the probation, ARGV[4] ms) was
# claimed ARGV[3] - the hand-out ms after it was handed out: fold that into the mean claim time
# (field claim_mean, ms; a moving average over about 32 claims), part of the slot cycle that
# ADMIT_LUA's wait estimates use. A slot already confirmed (a restarted quiz) is not a claim.
CONFIRM_LUA = """
local held = redis.call('ZSCORE', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
if not held then return 0 end
local probation = tonumber(ARGV[4])
local claim = tonumber(ARGV[3]) - (tonumber(held) - probation)
if claim < 0 or claim > probation then return 0 end
local mean = tonumber(redis.call('HGET', KEYS[1], 'claim_mean') or '-1')
if mean >= 0 then claim = math.floor(mean + (claim - mean) / 32) end
redis.call('HSET', KEYS[1], 'claim_mean', claim)
return 1
"""


@dataclass(frozen=True)
class Decision:
    outcome: int  # ADMITTED, WAITING or REFUSED
    ticket: int
    position: int  # 1 = next in line; 0 when admitted
    queue_length: int
    active: int
    capacity: int
    rate_milli: int = 0  # visitors admitted per 1000 s over the last whole window (0: not measured yet)
    pace_milli: int = 0  # the pace in effect, visitors admitted per 1000 s at most (0: not paced)
    turn_ms: int = 0  # a waiting visitor: when their turn should come, from the slots (ms from now)

    @property
    def admitted(self) -> bool:
        return self.outcome == ADMITTED

    @property
    def refused(self) -> bool:
        return self.outcome == REFUSED


class WaitingRoomStore:
    """Redis calls of the waiting room; every admit() is exactly one round trip (EVALSHA)."""

    def __init__(self, client):
        self.client = client
        self.script = client.register_script(ADMIT_LUA)
        self.release_script = client.register_script(RELEASE_LUA)
        self.confirm_script = client.register_script(CONFIRM_LUA)
        self.call = FastCaller(client)  # a new visitor's one round trip, on the lean path

    def admit(
        self,
        *,
        now_ms: int,
        capacity: int,
        probation_ms: int,
        ticket: int | None,
        address: str | None = None,
        arrivals_per_minute: int = 0,
        pace_milli: int = PACE_OFF,
        burst_seconds: int = 1,
        visit_seconds: int = 120,
    ) -> Decision:
        """Admit, queue or refuse one visitor; `address` only for a cookieless arrival (counted)."""
        arrivals = ARRIVALS_KEY.format(group=address or "-", minute=now_ms // 60_000)
        raw = self._run(
            [STATE_KEY, ACTIVE_KEY, ISSUED_KEY, arrivals],
            [
                now_ms,
                capacity,
                "" if ticket is None else ticket,
                SERVE_BATCH,
                RATE_WINDOW_MS,
                probation_ms,
                arrivals_per_minute if address else "",
                pace_milli,
                burst_seconds,
                visit_seconds,
            ],
        )
        return Decision(*(int(v) for v in raw))

    def _run(self, keys: list, args: list):
        return self.call.evalsha(self.script, keys, args)

    def confirm(self, ticket: int, *, until_ms: int, now_ms: int, probation_ms: int) -> bool:
        """The visitor started a quiz: their slot is held for the whole visit (re-taken if it
        lapsed), and the time since its hand-out joins the mean claim time (one round trip).
        True when it was a claim of a slot on probation."""
        args = [f"t{ticket}", until_ms, now_ms, probation_ms]
        return bool(self.call.evalsha(self.confirm_script, [STATE_KEY, ACTIVE_KEY], args))

    def release(self, ticket: int, *, now_ms: int, visit_seconds: int) -> bool:
        """A visit ended (the quiz was submitted): its slot frees now, not when its time runs out,
        and its length joins the mean visit length (one round trip)."""
        args = [f"t{ticket}", now_ms, visit_seconds * 1000]
        return bool(self.call.evalsha(self.release_script, [STATE_KEY, ACTIVE_KEY], args))

    def set_capacity(self, capacity: int) -> None:
        """Store the live capacity: every worker of every instance admits against it at once."""
        self.client.hset(STATE_KEY, "capacity", capacity)

    def set_pace(self, pace_milli: int) -> None:
        """Store the live pace (milli-visitors/s; PACE_DERIVED or PACE_OFF), read by every admission."""
        self.client.hset(STATE_KEY, "pace", pace_milli)

    def live_pace(self) -> int | None:
        raw = self.client.hget(STATE_KEY, "pace")
        return int(raw) if raw is not None else None

    def live_capacity(self) -> int | None:
        raw = self.client.hget(STATE_KEY, "capacity")
        return int(raw) if raw is not None else None

    def snapshot(self, *, now_ms: int) -> dict:
        """Queue length, oldest wait and new visitors admitted per second (admin page, not hot path)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hmget(
            STATE_KEY, "next", "served", "capacity", "admitted", "rate", "pace", "visit_mean", "claim_mean"
        )
        pipe.zcount(ACTIVE_KEY, now_ms, "+inf")
        state, active = pipe.execute()
        nxt, served, capacity, admitted, rate, pace, visit_mean, claim_mean = (
            int(v) if v is not None else None for v in state
        )
        nxt, served = nxt or 0, served or 0
        oldest = self.client.hget(ISSUED_KEY, served) if nxt > served else None
        return {
            "queue_length": nxt - served,
            "oldest_wait_s": round((now_ms - int(oldest)) / 1000, 1) if oldest else 0.0,
            "active_visitors": int(active),
            "visitors_admitted_per_s": round((rate or 0) / 1000, 2),
            "visitors_admitted_total": admitted or 0,
            "mean_visit_s": round(visit_mean / 1000, 1) if visit_mean else None,  # None: none ended yet
            # From a slot's hand-out to its visitor's start (None: no slot claimed from probation yet).
            "mean_claim_s": round(claim_mean / 1000, 1) if claim_mean is not None else None,
            "live_capacity": capacity,
            "live_pace_milli": pace,
        }


def pace_in_effect(setting_milli: int, *, capacity: int, visit_seconds: int) -> int:
    """The pace ADMIT_LUA applies, in milli-visitors/s (0: not paced); mirrors its first lines."""
    if setting_milli < 0:
        return 2000 * capacity // visit_seconds
    return setting_milli


def burst_of(pace_milli: int, *, burst_seconds: int) -> int:
    """Visitors the bucket holds at most (ADMIT_LUA's burst, in whole visitors)."""
    return max(1, pace_milli * burst_seconds // 1000) if pace_milli > 0 else 0
