"""The real openai SDK against the fake server: which errors retry, Retry-After, the breaker."""

import itertools
import time

import pytest

from devstack.fake_openai import synthetic_inputs
from quizapp.ai import prompts
from quizapp.ai.calls import AnalysisUnavailable
from quizapp.ai.runtime import get_runtime, stop_runtime

MESSAGES = prompts.build_messages(synthetic_inputs("client"))


@pytest.fixture
def runtime(make_app, fake_openai):
    fake_openai.reset()
    fake_openai.set_mode(mode="ok", latency=0.05, rpm=600, window=60, retry_after=1.0)
    app = make_app(
        OPENAI_API_KEY="sk-test",
        OPENAI_BASE_URL=fake_openai.base_url,
        OPENAI_TIMEOUT=1,
        AI_RETRIES=3,
        AI_BREAKER_FAILURES=2,
        AI_BREAKER_COOLDOWN=30,
    )
    yield get_runtime(app)
    stop_runtime(app)


def test_429_retries_after_the_servers_retry_after_ms_and_pays_budget_again(runtime, fake_openai):
    # The headers say retry-after: 1 and retry-after-ms: 300; the precise one wins.
    fake_openai.set_mode(mode="ratelimit", count=2, retry_after=0.3)
    text = runtime.caller.call_with_retries(MESSAGES, deadline=time.time() + 10)
    calls = fake_openai.calls()["calls"]
    assert text.startswith("Fake AI analysis")
    assert [c["status"] for c in calls] == [429, 429, 200]
    gaps = [later["start"] - earlier["end"] for earlier, later in itertools.pairwise(calls)]
    print(f"\n[figure] gaps after 429 with retry-after-ms=300: {', '.join(f'{g:.3f}s' for g in gaps)}")
    assert all(0.3 <= gap < 0.9 for gap in gaps)
    assert runtime.store.counters()["retries"] == 2
    assert runtime.budget.usage()["window_used"] == 3  # each attempt took a budget slot
    # Rate limiting is backpressure, not failure.
    assert runtime.breaker.state() == "CLOSED"


def test_5xx_retries_then_the_breaker_opens(runtime, fake_openai):
    fake_openai.set_mode(mode="error500")
    with pytest.raises(AnalysisUnavailable) as failure:
        runtime.caller.call_with_retries(MESSAGES, deadline=time.time() + 10)
    # Two 500s open the breaker (AI_BREAKER_FAILURES=2); the third attempt is refused by it.
    assert failure.value.reason == "breaker_open"
    assert [c["status"] for c in fake_openai.calls()["calls"]] == [500, 500]
    assert runtime.breaker.state() == "OPEN"
    # The refused attempt's slot was refunded.
    assert runtime.budget.usage()["window_used"] == 2


def test_malformed_body_and_timeouts(runtime, fake_openai):
    fake_openai.set_mode(mode="malformed", count=1)
    with pytest.raises(AnalysisUnavailable) as failure:
        runtime.caller.call_with_retries(MESSAGES, deadline=time.time() + 10)
    assert failure.value.reason == "upstream_error"
    # Not retried: a retry cannot fix a broken body.
    assert len(fake_openai.calls()["calls"]) == 1
    # Resets the count.
    runtime.caller.call_with_retries(MESSAGES, deadline=time.time() + 10)
    # First attempt times out (OPENAI_TIMEOUT=1), next succeeds.
    fake_openai.set_mode(mode="hang", count=1)
    text = runtime.caller.call_with_retries(MESSAGES, deadline=time.time() + 10)
    assert text.startswith("Fake AI analysis") and len(fake_openai.calls()["calls"]) == 4
    assert runtime.store.counters()["retries"] == 1
    # The success reset the consecutive count.
    assert runtime.breaker.state() == "CLOSED"
