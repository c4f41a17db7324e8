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
local blob = false
local has_session = ARGV[1] == "1"
if ARGV[1] == "k" then
  blob = redis.call("GET", KEYS[1])
  has_session = blob ~= false
end
local sliding = ARGV[2] == "s"
local cost = tonumber(ARGV[3])
local applied = {}
local best, best_expiry, best_remaining = 0, 0, 0

for i = 1, (#ARGV - 3) / 3 do
  local group = ARGV[3 * i + 1]
  if group == "0" or (group == "1") == has_session then
    local amount = tonumber(ARGV[3 * i + 2])
    local expiry = tonumber(ARGV[3 * i + 3]) * 1000
    local current, previous = KEYS[2 * i], KEYS[2 * i + 1]
    local count, retry
    if sliding then
      local current_ttl = redis.call("PTTL", current)
      if current_ttl > 0 and current_ttl < expiry then
        -- the current window is over: it becomes the previous one, as in limits' own script
        redis.call("RENAME", current, previous)
        redis.call("SET", current, 0, "PX", current_ttl + expiry)
        current_ttl = current_ttl + expiry
      end
      local previous_count = tonumber(redis.call("GET", previous)) or 0
      local previous_ttl = math.max(redis.call("PTTL", previous), 0)
      local current_count = tonumber(redis.call("GET", current)) or 0
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
      count = tonumber(redis.call("GET", current)) or 0
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
    if redis.call("EXISTS", current) == 1 then
      redis.call("INCRBY", current, cost)
    else
      redis.call("SET", current, cost, "PX", expiry * 2000)
    end
  elseif redis.call("INCRBY", current, cost) == cost then
    redis.call("EXPIRE", current, expiry)
  end
end
return {blob, 0, best, best_remaining}
