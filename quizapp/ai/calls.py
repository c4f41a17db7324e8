"""One analysis from cache, from a call another worker is already making, or from the upstream."""

from __future__ import annotations

import logging
import time
import uuid

import gevent
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from . import client as ai_client
from .breaker import BreakerOpen
from .budget import BudgetExhausted
from .store import METRICS_KEY

log = logging.getLogger(__name__)

CACHE_PREFIX = "ai:cache:"  # + sha256 of the prompt inputs -> analysis text
OWNER_PREFIX = "ai:owner:"  # + sha256 -> token of the worker making the one shared call
FAILED_PREFIX = "ai:failed:"  # + sha256 -> set briefly when the shared call gave up
FAILED_SECONDS = 5
WATCH_INTERVAL = 0.1

# KEYS: owner key. ARGV: token. Delete only our own ownership.
RELEASE_OWNER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class AnalysisUnavailable(Exception):
    """No AI text before the deadline: the caller gives the algorithmic analysis instead."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Caller:
    """Cache, cross-worker dedup, breaker, budget and tenacity retries around one SDK client."""

    def __init__(self, runtime):
        self.rt = runtime
        self.redis = runtime.redis
        self._release_owner = self.redis.register_script(RELEASE_OWNER)
        # This process's moving average of call latency: a call that cannot end before the
        # job's deadline is not started (it would spend budget on an answer nobody sees).
        self.latency_estimate = 0.0

    def cached(self, fingerprint: str) -> str | None:
        value = self.redis.get(CACHE_PREFIX + fingerprint)
        return value.decode() if value is not None else None

    def try_own(self, fingerprint: str, deadline: float) -> str | None:
        """Become the one worker calling upstream for this prompt: a token, or None if taken."""
        token = uuid.uuid4().hex
        ttl_ms = max(1000, int((deadline - time.time()) * 1000) + 1000)
        if self.redis.set(OWNER_PREFIX + fingerprint, token, nx=True, px=ttl_ms):
            return token
        return None

    def fetch_as_owner(
        self, fingerprint: str, *, messages: list[dict], token: str, deadline: float
    ) -> tuple[str, str]:
        """Call upstream (with retries), publish the text to the cache, release ownership."""
        try:
            # The previous owner may have published (or given up) between our cache miss and our SET NX.
            shared = self._shared_outcome(fingerprint)
            if shared is not None:
                return shared, "dedup_hits"
            text = self._call_and_publish(fingerprint, messages, deadline)
            return text, "completed"
        finally:
            self._release_owner(keys=[OWNER_PREFIX + fingerprint], args=[token])

    def _call_and_publish(self, fingerprint, messages, deadline) -> str:
        try:
            text = self.call_with_retries(messages, deadline)
        except AnalysisUnavailable as exc:
            # Our deadline is only ours: a waiter with time left may still take over.
            if exc.reason != "deadline":
                self.redis.set(FAILED_PREFIX + fingerprint, exc.reason, ex=FAILED_SECONDS)
            raise
        ttl = self.rt.config["AI_CACHE_SECONDS"]
        self.redis.set(CACHE_PREFIX + fingerprint, text, ex=ttl)
        return text

    def await_shared(self, fingerprint: str, *, messages: list[dict], deadline: float) -> tuple[str, str]:
        """Watch the result key of another worker's call; take over if that worker vanished."""
        while time.time() < deadline:
            shared = self._shared_outcome(fingerprint)
            if shared is not None:
                return shared, "dedup_hits"
            token = self.try_own(fingerprint, deadline)
            if token:
                return self.fetch_as_owner(fingerprint, messages=messages, token=token, deadline=deadline)
            gevent.sleep(WATCH_INTERVAL)
        raise AnalysisUnavailable("deadline")

    def _shared_outcome(self, fingerprint: str) -> str | None:
        """The text another call published for this prompt, or None; if that call gave up seconds
        ago, raise its AnalysisUnavailable (share the outcome, do not hammer upstream)."""
        text = self.cached(fingerprint)
        if text is not None:
            return text
        failed = self.redis.get(FAILED_PREFIX + fingerprint)
        if failed is not None:
            raise AnalysisUnavailable(failed.decode())
        return None

    def call_with_retries(self, messages: list[dict], deadline: float) -> str:
        """AI_RETRIES attempts, exponential backoff with jitter or the server's Retry-After."""
        backoff = wait_exponential_jitter(multiplier=0.5, max=8.0, jitter=0.5)

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            hinted = ai_client.retry_after_seconds(exc) if exc else None
            delay = hinted if hinted is not None else backoff(state)
            if time.time() + delay >= deadline:
                raise AnalysisUnavailable("deadline")
            return delay

        def before_sleep(state: RetryCallState) -> None:
            self.rt.store.count("retries")

        retrying = Retrying(
            stop=stop_after_attempt(self.rt.config["AI_RETRIES"]),
            wait=wait,
            retry=retry_if_exception(ai_client.is_retryable),
            before_sleep=before_sleep,
            sleep=gevent.sleep,
            reraise=True,
        )
        try:
            return retrying(self.attempt, messages, deadline)
        except (AnalysisUnavailable, gevent.Timeout):
            raise
        except BreakerOpen:
            raise AnalysisUnavailable("breaker_open") from None
        except BudgetExhausted:
            raise AnalysisUnavailable("deadline") from None
        except Exception as exc:
            log.warning("ai.upstream_failed", extra={"error": type(exc).__name__})
            raise AnalysisUnavailable("upstream_error") from exc

    def attempt(self, messages: list[dict], deadline: float) -> str:
        """One upstream call: budget slot first (every retry pays again), then the breaker, then SDK."""
        lease = self.rt.budget.acquire(deadline)
        called, answered = False, False
        try:
            if time.time() + self.latency_estimate >= deadline:
                raise AnalysisUnavailable("deadline")
            probe = self.rt.breaker.allow()
            self.rt.budget.stamp_start(lease, METRICS_KEY)  # counts it; waits for a replica if asked
            called, started = True, time.monotonic()
            text = ai_client.complete_chat(self.rt.client, self.rt.config["OPENAI_MODEL"], messages)
            answered = True
        except gevent.Timeout:
            if called:
                self.rt.breaker.record_failure(probe)
            raise
        except Exception as exc:
            answered = ai_client.got_an_answer(exc)
            if called and ai_client.counts_as_failure(exc):
                self.rt.breaker.record_failure(probe)
            raise
        finally:
            # Whatever interrupts us (even the job's deadline), the slot goes back now.
            if called:
                self.rt.budget.release(lease, answered=answered)
            else:
                self.rt.budget.refund(lease)
        self.rt.breaker.record_success(probe)
        elapsed = time.monotonic() - started
        previous = self.latency_estimate or elapsed
        self.latency_estimate = 0.8 * previous + 0.2 * elapsed
        return text
