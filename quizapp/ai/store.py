"""Job state in Redis keyed by subject_id (no personal data), so any worker can answer a poll."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time

from ..redis_fast import FastCaller
from .lua import LUA_NOW, as_text

log = logging.getLogger(__name__)

QUEUE_KEY = "ai:queue"  # zset subject_id -> priority score (paid first, then arrival)
DEADLINES_KEY = "ai:deadlines"  # zset subject_id -> deadline (ms), swept by every worker
METRICS_KEY = "ai:metrics"  # hash of counters
WAITS_KEY = "ai:waits"  # list of recent waits (ms), newest first
# hash prompt fingerprint -> jobs not final yet with that prompt (they share one upstream call)
PENDING_PROMPTS_KEY = "ai:pending_prompts"
WAITS_KEPT = 1000
PENDING = ("queued", "running")
DONE = "done"  # final: the AI's text
FALLBACK = "fallback"  # final: the scoring model's text, kept only briefly


def job_key(subject_id: str) -> str:
    return f"ai:job:{subject_id}"


def user_key_for(user_key: str, secret: str) -> str:
    """The per-user slot set, named by an HMAC so no session id or email reaches Redis keys."""
    digest = hmac.new(secret.encode(), user_key.encode(), hashlib.sha256).hexdigest()
    return "ai:user:" + digest[:32]


# KEYS: job, queue, user set, deadlines, pending prompts. ARGV: subject, score, queue_max, per_user,
# deadline_ms (relative), ttl_s, inputs json, fingerprint, paid, user set key, pending_max (0: none).
# pending_max bounds the jobs not final yet (the deadlines zset: queued, with a dispatcher, calling)
# that a new job may join, unless its prompt is among them (it shares that call). Atomic: caps are exact.
# The queue's scores are two bands, paid (arrival ms) below free (10^13 + arrival ms). A score that
# ties with (or is below) the last of its band goes right after it, so jobs keep their order of
# arrival: a tie would otherwise be ordered by subject id (two payers within one millisecond).
IN_ARRIVAL_ORDER = """
local function in_arrival_order(queue, score)
  local top, bottom = '(10000000000000', '-inf'
  if score >= 10000000000000 then top, bottom = '+inf', 10000000000000 end
  local last = redis.call('ZREVRANGEBYSCORE', queue, top, bottom, 'WITHSCORES', 'LIMIT', 0, 1)
  if last[2] and tonumber(last[2]) >= score then return tonumber(last[2]) + 1 end
  return score
end
"""

ENQUEUE = (
    LUA_NOW
    + IN_ARRIVAL_ORDER
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then return {'exists', -1, 0} end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[4]) then return {'refused', -1, 0} end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then return {'full', -1, 0} end
local pending_max = tonumber(ARGV[11])
if pending_max > 0 and redis.call('ZCARD', KEYS[4]) >= pending_max
    and (tonumber(redis.call('HGET', KEYS[5], ARGV[8]) or '0')) <= 0 then
  return {'full', -1, 0}
end
local deadline = now + tonumber(ARGV[5])
redis.call('HINCRBY', KEYS[5], ARGV[8], 1)
-- Every pending job is final by its deadline (then FINISH counts it down): a set idle for longer
-- than a deadline holds only counts lost with a job's data, and expires.
redis.call('PEXPIRE', KEYS[5], tonumber(ARGV[5]) + 60000)
redis.call('HSET', KEYS[1], 'state', 'queued', 'inputs', ARGV[7], 'fp', ARGV[8], 'paid', ARGV[9],
  'user', ARGV[10], 'enqueued_at', now, 'deadline', deadline)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[6]))
redis.call('ZADD', KEYS[2], in_arrival_order(KEYS[2], tonumber(ARGV[2])), ARGV[1])
redis.call('ZADD', KEYS[3], deadline, ARGV[1])
redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[5]) + 1000)
redis.call('ZADD', KEYS[4], deadline, ARGV[1])
return {'queued', redis.call('ZRANK', KEYS[2], ARGV[1]), deadline}
"""
)

# KEYS: job, queue. ARGV: subject. A queued free job becomes paid: ahead of every free job,
# behind those who paid earlier.
PROMOTE = (
    LUA_NOW
    + IN_ARRIVAL_ORDER
    + """
if redis.call('HGET', KEYS[1], 'state') ~= 'queued' then return 0 end
if redis.call('HGET', KEYS[1], 'paid') == '1' then return 0 end
redis.call('HSET', KEYS[1], 'paid', '1')
redis.call('ZADD', KEYS[2], 'XX', in_arrival_order(KEYS[2], now), ARGV[1])
return 1
"""
)

# KEYS: job, queue. ARGV: subject. Queued -> running (leaves the queue); 0 if no longer queued.
START = """
if redis.call('HGET', KEYS[1], 'state') ~= 'queued' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'running')
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""

# KEYS: job, queue, deadlines, metrics, waits, pending prompts. ARGV: subject, state, text, fallback,
# message, ttl_s, counter, waits_kept. Compare-and-set: only a pending job finishes, exactly once
# cluster-wide.
FINISH = (
    LUA_NOW
    + """
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'queued' and state ~= 'running' then return 0 end
local user = redis.call('HGET', KEYS[1], 'user')
local prompt = redis.call('HGET', KEYS[1], 'fp')
if prompt and redis.call('HINCRBY', KEYS[6], prompt, -1) <= 0 then redis.call('HDEL', KEYS[6], prompt) end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'text', ARGV[3], 'fallback', ARGV[4], 'message', ARGV[5],
  'finished_at', now)
redis.call('HDEL', KEYS[1], 'inputs')
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[6]))
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
if user then redis.call('ZREM', user, ARGV[1]) end
redis.call('HINCRBY', KEYS[4], ARGV[7], 1)
if ARGV[4] == '1' then redis.call('HINCRBY', KEYS[4], 'fallbacks', 1) end
local enqueued = tonumber(redis.call('HGET', KEYS[1], 'enqueued_at') or now)
local wait = now - enqueued
redis.call('LPUSH', KEYS[5], wait)
redis.call('LTRIM', KEYS[5], 0, tonumber(ARGV[8]) - 1)
-- The wait histogram for /metrics (quizapp.metrics.AI_WAIT_BUCKETS_MS): one bucket, sum, count.
local bucket = 'inf'
for _, le in ipairs({500, 1000, 2000, 5000, 10000, 20000, 30000, 60000, 120000}) do
  if wait <= le then bucket = tostring(le) break end
end
redis.call('HINCRBY', KEYS[4], 'wait_bucket:' .. bucket, 1)
redis.call('HINCRBY', KEYS[4], 'wait_sum_ms', wait)
redis.call('HINCRBY', KEYS[4], 'wait_count', 1)
return 1
"""
)


# KEYS: job, queue. ARGV: subject. The poll's one round trip: the job's fields and, while it is
# queued, its rank (-1 otherwise); false when there is no such job.
POLL = """
local fields = redis.call('HGETALL', KEYS[1])
if #fields == 0 then return false end
local rank = redis.call('ZRANK', KEYS[2], ARGV[1])
return {fields, rank or -1}
"""


class JobStore:
    """Create, start, finish and read analysis jobs; every transition is one atomic script."""

    def __init__(self, redis_client, ttl_seconds: int, secret: str, fallback_ttl_seconds: int | None = None):
        self.redis = redis_client
        self.fast = FastCaller(redis_client)  # the poll's read, on the lean path (redis_fast.py)
        self.ttl = ttl_seconds
        # A fallback is kept only briefly: the next visit after it expires asks the AI again.
        self.fallback_ttl = min(ttl_seconds, fallback_ttl_seconds or ttl_seconds)
        self.secret = secret
        self._enqueue = redis_client.register_script(ENQUEUE)
        self._start = redis_client.register_script(START)
        self._promote = redis_client.register_script(PROMOTE)
        self._finish = redis_client.register_script(FINISH)
        self._poll = redis_client.register_script(POLL)

    def enqueue(
        self,
        subject_id: str,
        *,
        inputs: dict,
        fingerprint: str,
        user_key: str,
        paid: bool,
        queue_max: int,
        per_user: int,
        deadline_s: float,
        pending_max: int = 0,
    ) -> tuple[str, int, float]:
        """('queued', rank, deadline) | ('exists'|'refused'|'full', -1, 0). 'full': queue_max jobs
        queued, or pending_max (> 0) jobs not final yet."""
        # Paid reports sort before every free one; within a class, first come first served.
        score = (0 if paid else 1) * 10**13 + int(time.time() * 1000)
        user_set = user_key_for(user_key, self.secret)
        outcome, rank, deadline_ms = self._enqueue(
            keys=[job_key(subject_id), QUEUE_KEY, user_set, DEADLINES_KEY, PENDING_PROMPTS_KEY],
            args=[
                subject_id,
                score,
                queue_max,
                per_user,
                int(deadline_s * 1000),
                self.ttl,
                json.dumps(inputs, sort_keys=True),
                fingerprint,
                int(bool(paid)),
                user_set,
                pending_max,
            ],
        )
        # The deadline on Redis's clock, the one every worker's timer and sweeper keeps.
        return as_text(outcome), int(rank), int(deadline_ms) / 1000.0

    def record_final(
        self, subject_id: str, *, state: str, text: str, counter: str, message: str = ""
    ) -> None:
        """A job that never queued (queue full, cache hit) still leaves its answer for the poll endpoint."""
        fallback = state == FALLBACK
        pipe = self.redis.pipeline(transaction=True)
        fields = {
            "state": state,
            "text": text,
            "fallback": int(fallback),
            "message": message,
        }
        pipe.hset(
            job_key(subject_id),
            mapping={**fields, "finished_at": int(time.time() * 1000)},
        )
        pipe.expire(job_key(subject_id), self._ttl_for(state))
        pipe.hincrby(METRICS_KEY, counter, 1)
        if fallback:
            pipe.hincrby(METRICS_KEY, "fallbacks", 1)
        pipe.execute()

    def promote(self, subject_id: str) -> bool:
        return bool(self._promote(keys=[job_key(subject_id), QUEUE_KEY], args=[subject_id]))

    def start(self, subject_id: str) -> bool:
        return bool(self._start(keys=[job_key(subject_id), QUEUE_KEY], args=[subject_id]))

    def finish(self, subject_id: str, *, state: str, text: str, counter: str, message: str = "") -> bool:
        """End a pending job as `state` (done or fallback), adding one to `counter`; False if it was
        no longer pending (another worker, the sweeper or a reset finished it first)."""
        return bool(
            self._finish(
                keys=[
                    job_key(subject_id),
                    QUEUE_KEY,
                    DEADLINES_KEY,
                    METRICS_KEY,
                    WAITS_KEY,
                    PENDING_PROMPTS_KEY,
                ],
                args=[
                    subject_id,
                    state,
                    text,
                    int(state == FALLBACK),
                    message,
                    self._ttl_for(state),
                    counter,
                    WAITS_KEPT,
                ],
            )
        )

    def _ttl_for(self, state: str) -> int:
        return self.fallback_ttl if state == FALLBACK else self.ttl

    def read(self, subject_id: str) -> dict | None:
        return self._job(self.fast("HGETALL", job_key(subject_id)))

    def read_polled(self, subject_id: str) -> tuple[dict | None, int | None]:
        """The job and its queue position (None unless queued) in one round trip: the poll's read."""
        reply = self.fast.evalsha(self._poll, [job_key(subject_id), QUEUE_KEY], [subject_id])
        if not reply:
            return None, None
        fields, rank = reply
        return self._job(fields), (None if int(rank) < 0 else int(rank) + 1)

    @staticmethod
    def _job(raw) -> dict | None:
        if not raw:
            return None
        if isinstance(raw, list):  # RESP2's flat [field, value, ...]; RESP3 gives a map
            raw = dict(zip(raw[::2], raw[1::2], strict=True))
        job = {as_text(k): as_text(v) for k, v in raw.items()}
        for name in ("enqueued_at", "deadline", "finished_at"):
            if name in job:
                job[name] = int(job[name]) / 1000.0
        job["fallback"] = job.get("fallback") == "1"
        job["inputs"] = json.loads(job["inputs"]) if job.get("inputs") else None
        return job

    def queued_subjects(self) -> list[str]:
        return [as_text(s) for s in self.redis.zrange(QUEUE_KEY, 0, -1)]

    def overdue_subjects(self, limit: int = 100) -> list[str]:
        now_ms = int(time.time() * 1000)
        return [
            as_text(s) for s in self.redis.zrangebyscore(DEADLINES_KEY, "-inf", now_ms, start=0, num=limit)
        ]

    def count(self, counter: str, amount: int = 1) -> None:
        self.redis.hincrby(METRICS_KEY, counter, amount)

    def counters(self) -> dict:
        return {as_text(k): int(v) for k, v in self.redis.hgetall(METRICS_KEY).items()}

    def queue_length(self) -> int:
        return int(self.redis.zcard(QUEUE_KEY))

    def recent_waits(self) -> list[float]:
        return [int(v) / 1000.0 for v in self.redis.lrange(WAITS_KEY, 0, WAITS_KEPT - 1)]
