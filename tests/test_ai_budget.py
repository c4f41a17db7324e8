"""The Redis budget and breaker under real concurrency: exact counts, leases that expire."""

import time

import gevent
import pytest

from quizapp.ai.breaker import Breaker, BreakerOpen
from quizapp.ai.budget import Budget


def concurrently(count, func):
    jobs = [gevent.spawn(func) for _ in range(count)]
    gevent.joinall(jobs, raise_error=True)
    return [job.value for job in jobs]


def test_window_allows_exactly_rpm_starts(redis_client):
    budget = Budget(redis_client, rpm=10, window_seconds=60, max_in_flight=100, lease_seconds=30)
    leases = concurrently(50, lambda: budget.try_acquire()[0])
    taken = [lease for lease in leases if lease]
    assert len(taken) == 10
    for lease in taken:
        budget.release(lease)  # ending calls frees in-flight slots, not window slots
    assert budget.try_acquire()[0] is None
    assert budget.usage() == {
        "window_used": 10,
        "window_limit": 10,
        "in_flight": 0,
        "in_flight_limit": 100,
    }


def test_in_flight_cap_and_refund(redis_client):
    budget = Budget(redis_client, rpm=100, window_seconds=60, max_in_flight=4, lease_seconds=30)
    leases = [lease for lease in concurrently(20, lambda: budget.try_acquire()[0]) if lease]
    assert len(leases) == 4
    budget.release(leases[0])
    again = [lease for lease in concurrently(20, lambda: budget.try_acquire()[0]) if lease]
    assert len(again) == 1
    budget.refund(again[0])
    assert budget.usage()["window_used"] == 4 and budget.usage()["in_flight"] == 3


def test_a_lease_never_released_expires(redis_client):
    """A worker killed mid-call never releases its lease; the slot comes back after the lease."""
    budget = Budget(redis_client, rpm=100, window_seconds=60, max_in_flight=2, lease_seconds=0.6)
    assert all(budget.try_acquire()[0] for _ in range(2))
    lease, wait = budget.try_acquire()
    assert lease is None and wait > 0
    gevent.sleep(0.7)
    assert budget.usage()["in_flight"] == 0
    assert budget.try_acquire()[0] is not None


def test_acquire_waits_for_the_window_then_gives_up_at_the_deadline(redis_client):
    from quizapp.ai.budget import BudgetExhausted

    budget = Budget(redis_client, rpm=1, window_seconds=0.5, max_in_flight=10, lease_seconds=5)
    first = budget.acquire(deadline=time.time() + 1)
    budget.release(first)  # answered: counted from now for one window
    started = time.monotonic()
    second = budget.acquire(deadline=time.time() + 2)
    assert first != second and time.monotonic() - started >= 0.5
    with pytest.raises(BudgetExhausted):
        budget.acquire(deadline=time.time() + 0.2)


def test_a_call_counts_from_its_latest_possible_arrival(redis_client):
    """The upstream counts arrivals: a call on its way counts until it answered, then from then;
    an unanswered call (timeout) counts a whole lease longer, it may still arrive."""
    budget = Budget(redis_client, rpm=1, window_seconds=0.3, max_in_flight=10, lease_seconds=3)
    window = 0.3 + 0.5  # with the clock-skew guard
    first = budget.try_acquire()[0]
    gevent.sleep(window + 0.2)  # a budget stamped at the start would allow another call by now
    assert budget.try_acquire()[0] is None
    budget.release(first, answered=True)
    assert budget.try_acquire()[0] is None  # it may have arrived just now
    gevent.sleep(window + 0.2)
    second = budget.try_acquire()[0]
    assert second is not None
    budget.release(second, answered=False)
    gevent.sleep(window + 0.2)
    assert budget.try_acquire()[0] is None  # counted until a lease from its end


def _probe_or_none(breaker):
    try:
        return breaker.allow()
    except BreakerOpen:
        return None


def test_breaker_opens_half_opens_one_probe_and_closes(redis_client):
    breaker = Breaker(redis_client, failures=3, cooldown_seconds=0.5, probe_seconds=5)
    assert breaker.allow() == "" and breaker.state() == "CLOSED"
    assert [breaker.record_failure("") for _ in range(3)] == [
        "CLOSED",
        "CLOSED",
        "OPEN",
    ]
    with pytest.raises(BreakerOpen):
        breaker.allow()
    gevent.sleep(0.55)
    assert breaker.state() == "HALF_OPEN"
    tokens = [t for t in concurrently(20, lambda: _probe_or_none(breaker)) if t is not None]
    assert len(tokens) == 1 and tokens[0] != ""  # exactly one probe cluster-wide
    # A failed probe re-opens at once.
    assert breaker.record_failure(tokens[0]) == "OPEN"
    assert _probe_or_none(breaker) is None
    gevent.sleep(0.55)
    probe = breaker.allow()
    assert probe and breaker.record_success(probe) == "CLOSED"
    assert concurrently(5, lambda: _probe_or_none(breaker)) == [""] * 5


def test_success_resets_the_consecutive_count_and_force_close(redis_client):
    breaker = Breaker(redis_client, failures=2, cooldown_seconds=60, probe_seconds=5)
    breaker.record_failure("")
    breaker.record_success("")
    assert breaker.record_failure("") == "CLOSED"
    assert breaker.record_failure("") == "OPEN" and breaker.is_open()
    breaker.force_close()
    assert breaker.state() == "CLOSED" and breaker.allow() == ""
