-- One call per page view: read the session and check every limit that applies, all or nothing.
-- Keys and counters are those of the limits library (same names, same window arithmetic), so
-- Flask-Limiter's storage, its tools and this script see the same numbers.
--
-- KEYS[1]: the session key ("" when there is none); then two keys per limit: current and
--          previous window (fixed-window passes the current key twice).
-- ARGV[1]: "k" look KEYS[1] up, "1" the request has a stored session, "0" it has none
-- ARGV[2]: "s" sliding-window-counter, "f" fixed-window;  ARGV[3]: cost of this request
-- ARGV[4..]: per limit: group ("0" always, "1" with a session, "2" without), amount, expiry (s)
-- Returns {session blob or false, refused limit (0 if none), retry ms | header limit, remaining}
--
-- Redis spends more on a script's strings than on its commands: each argument, key read and
-- reply string crosses into Lua (interned, collected), and each number parsed or printed costs
-- a strtod or printf. So the hot path reads everything in one MGET, parses only the figures of
-- the limits that apply, passes strings where it can, and makes 1 + 2 calls per limit:
-- - the MGET reads the session and both counters of every limit (one Redis or Sentinel primary:
--   the app has no Redis Cluster client, see redis_conn.py). No key expires while a script
--   runs, so what it read holds until the script returns;
-- - the previous window's TTL is derived from the current one's (below), not read;
-- - the hit is one INCRBY or SET: the MGET said whether the counter exists.
local call, floor, max = redis.call, math.floor, math.max
local mode, sliding, cost = ARGV[1], ARGV[2] == "s", tonumber(ARGV[3])
local limits = (#ARGV - 3) / 3
local first = mode == "k" and 1 or 2
local values = #KEYS >= first and call("MGET", unpack(KEYS, first)) or {}
local at = 1 - first -- values[at + 2i]: limit i's current window; values[at + 2i + 1]: previous
local blob = mode == "k" and values[1]
local skip = (mode == "1" or blob) and "2" or "1" -- the group that does not apply
local rolled, created -- rare: a counter two limits share, rolled or created by the first
local best, best_expiry, best_remaining = 0, 0, 0

for i = 1, limits do
  if ARGV[3 * i + 1] ~= skip then
    local amount, expiry = tonumber(ARGV[3 * i + 2]), tonumber(ARGV[3 * i + 3]) * 1000
    local current = KEYS[2 * i]
    local current_count = tonumber(values[at + 2 * i]) or 0
    local count, retry
    if sliding then
      local previous_count = tonumber(values[at + 2 * i + 1]) or 0
      local current_ttl, previous_ttl = call("PTTL", current), 0
      if rolled and rolled[current] then
        previous_count, current_count = rolled[current], 0
      end
      if current_ttl > 0 and current_ttl < expiry then
        -- the current window is over: it becomes the previous one (TTL and all), as in limits' script
        call("RENAME", current, KEYS[2 * i + 1])
        call("SET", current, 0, "PX", current_ttl + expiry)
        rolled = rolled or {}
        rolled[current] = current_count
        previous_count, previous_ttl, current_count, current_ttl = current_count, current_ttl, 0, current_ttl + expiry
      elseif previous_count > 0 and current_ttl > 0 then
        -- A previous window only comes from a roll (here or in limits' own scripts, which roll the
        -- same way) that sets the new current TTL to the old one + expiry: from then on
        -- previous TTL = current TTL - expiry (within the millisecond the roll's PTTL and SET took).
        -- limits' clear deletes both keys. Only Redis evicting a live current window alone (under
        -- maxmemory) breaks it: the previous one then weighs as if just ended until it expires
        -- (stricter, never looser).
        previous_ttl = current_ttl - expiry
      elseif previous_count > 0 then
        previous_ttl = max(call("PTTL", KEYS[2 * i + 1]), 0) -- no current window: its own TTL
      end
      count = floor(previous_count * previous_ttl / expiry) + current_count
      if count + cost > amount then
        -- allowed again once floor(weight) + current + cost <= amount (the weight decays with TTL)
        if current_count + cost > amount then
          -- wait until this window is the previous one and its weight has fallen far enough
          local decay = expiry * (1 - (amount - cost + 1) / current_count)
          retry = max(current_ttl - expiry, 0) + max(decay, 0)
        else
          retry = previous_ttl - expiry * (amount - cost - current_count + 1) / previous_count
        end
      end
    else
      count = current_count
      if count + cost > amount then
        retry = call("PTTL", current)
      end
    end
    if retry then
      return {blob, i, max(math.ceil(retry), 1000), 0}
    end
    -- the headers show the tightest limit: least remaining, then the shortest window
    local remaining = amount - count - cost
    if best == 0 or remaining < best_remaining or (remaining == best_remaining and expiry < best_expiry) then
      best, best_expiry, best_remaining = i, expiry, remaining
    end
  end
end

-- every limit that applies allows the request: count it in each
for i = 1, limits do
  if ARGV[3 * i + 1] ~= skip then
    local current = KEYS[2 * i]
    local exists = values[at + 2 * i] or (created and created[current])
    if sliding then
      if exists then
        call("INCRBY", current, ARGV[3])
      else
        call("SET", current, ARGV[3], "PX", tonumber(ARGV[3 * i + 3]) * 2000)
      end
    elseif not exists then
      call("SET", current, ARGV[3], "EX", ARGV[3 * i + 3]) -- what INCRBY then EXPIRE make of no key
    elseif call("INCRBY", current, ARGV[3]) == cost then
      call("EXPIRE", current, ARGV[3 * i + 3])
    end
    if not exists then
      created = created or {}
      created[current] = true
    end
  end
end
return {blob, 0, best, best_remaining}
