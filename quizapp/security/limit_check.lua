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
-- Every redis.call costs Redis ~2 us of lookup, ACL and reply conversion, more than the command
-- itself, so a page view makes 1 + 2 per limit of them (limits' own scripts: 6 per limit):
-- - one MGET reads the session and both counters of every limit (a single Redis or Sentinel
--   primary: the app has no Redis Cluster client, see redis_conn.py);
-- - the previous window's TTL is derived from the current one's (below), not read;
-- - the hit is one INCRBY or SET: the MGET already said whether the counter exists.
-- No key expires while a script runs (Redis looks keys up at the script's start time), so what
-- the MGET read stays true until the script returns.
local mode = ARGV[1]
local sliding = ARGV[2] == "s"
local cost = tonumber(ARGV[3])
local limits = (#ARGV - 3) / 3

local function may_apply(i, has_session)
  local group = ARGV[3 * i + 1]
  return group == "0" or has_session == nil or (group == "1") == has_session
end

-- The MGET: the session first (when asked), then current (and previous) of each limit that may
-- apply; with the session unknown yet, all of them (a key read in vain costs far less than a call).
local known_session = nil
if mode ~= "k" then
  known_session = mode == "1"
end
local names, slot = {}, {}
if mode == "k" then
  names[1] = KEYS[1]
end
for i = 1, limits do
  if may_apply(i, known_session) then
    slot[i] = #names + 1
    names[#names + 1] = KEYS[2 * i]
    if sliding then
      names[#names + 1] = KEYS[2 * i + 1]
    end
  end
end
local values = #names > 0 and redis.call("MGET", unpack(names)) or {}

local blob = false
local has_session = known_session
if mode == "k" then
  blob = values[1]
  has_session = blob ~= false
end

-- Per current key: its window figures and whether it exists, so two limits that share a counter
-- see what they would see one after the other.
local windows, exists = {}, {}

-- limits' sliding window: {previous count, previous TTL, current count, current TTL} (ms), after
-- rolling the current window into the previous one when it is over, as limits' own scripts do.
local function sliding_window(i, expiry)
  local current, previous = KEYS[2 * i], KEYS[2 * i + 1]
  local window = windows[current]
  if window then
    return window
  end
  local current_value, previous_value = values[slot[i]], values[slot[i] + 1]
  exists[current] = current_value ~= false
  local current_count = tonumber(current_value) or 0
  local previous_count = tonumber(previous_value) or 0
  local current_ttl = redis.call("PTTL", current)
  local previous_ttl = 0
  if current_ttl > 0 and current_ttl < expiry then
    -- the current window is over: it becomes the previous one (TTL and all), as in limits' script
    redis.call("RENAME", current, previous)
    redis.call("SET", current, 0, "PX", current_ttl + expiry)
    previous_count, previous_ttl = current_count, current_ttl
    current_count, current_ttl = 0, current_ttl + expiry
  elseif previous_count > 0 then
    if current_ttl > 0 then
      -- A previous window only comes from a roll (here or in limits' scripts, which roll the same
      -- way) that sets the new current TTL to the old one + expiry, and both count down together:
      -- previous TTL = current TTL - expiry for as long as both exist (limits' clear deletes both).
      -- (Within a millisecond: a roll's PTTL and SET PX each read the clock, in limits' scripts too.)
      previous_ttl = current_ttl - expiry
    else
      -- no current window (or one without a TTL): the previous one's own TTL
      previous_ttl = math.max(redis.call("PTTL", previous), 0)
    end
  end
  window = {previous_count, previous_ttl, current_count, current_ttl}
  windows[current] = window
  return window
end

local applied = {}
local best, best_expiry, best_remaining = 0, 0, 0

for i = 1, limits do
  if may_apply(i, has_session) then
    local amount = tonumber(ARGV[3 * i + 2])
    local expiry = tonumber(ARGV[3 * i + 3]) * 1000
    local count, retry
    if sliding then
      local window = sliding_window(i, expiry)
      local previous_count, previous_ttl = window[1], window[2]
      local current_count, current_ttl = window[3], window[4]
      count = math.floor(previous_count * previous_ttl / expiry) + current_count
      if count + cost > amount then
        -- allowed again once floor(weight) + current + cost <= amount (the weight decays with TTL)
        if current_count + cost > amount then
          -- wait until this window is the previous one and its weight has fallen far enough
          local decay = expiry * (1 - (amount - cost + 1) / current_count)
          retry = math.max(current_ttl - expiry, 0) + math.max(decay, 0)
        else
          retry = previous_ttl - expiry * (amount - cost - current_count + 1) / previous_count
        end
      end
    else
      local current = KEYS[2 * i]
      exists[current] = values[slot[i]] ~= false
      count = tonumber(values[slot[i]]) or 0
      if count + cost > amount then
        retry = redis.call("PTTL", current)
      end
    end
    if retry then
      return {blob, i, math.max(math.ceil(retry), 1000), 0}
    end
    applied[#applied + 1] = i
    -- the headers show the tightest limit: least remaining, then the shortest window
    local remaining = amount - count - cost
    if best == 0 or remaining < best_remaining or (remaining == best_remaining and expiry < best_expiry) then
      best, best_expiry, best_remaining = i, expiry, remaining
    end
  end
end

for _, i in ipairs(applied) do
  local expiry = tonumber(ARGV[3 * i + 3])
  local current = KEYS[2 * i]
  if sliding then
    if exists[current] then
      redis.call("INCRBY", current, cost)
    else
      redis.call("SET", current, cost, "PX", expiry * 2000)
    end
  elseif not exists[current] then
    redis.call("SET", current, cost, "EX", expiry)  -- what INCRBY then EXPIRE make of no key
  elseif redis.call("INCRBY", current, cost) == cost then
    redis.call("EXPIRE", current, expiry)
  end
  exists[current] = true
end
return {blob, 0, best, best_remaining}
