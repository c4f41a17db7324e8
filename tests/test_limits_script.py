"""The per-page Lua check (limit_check.lua) counts exactly as the limits library does on the same keys:
under concurrency, across a window roll done by either side, and with fixed windows."""

from __future__ import annotations

import time

import gevent
import pytest
from limits import parse
from limits.strategies import FixedWindowRateLimiter, SlidingWindowCounterRateLimiter

from quizapp.security import ratecheck
from quizapp.security.limits import ALWAYS, KEY_PREFIX, LIMITER_KEY, Entry

ADDRESS_KEY = "a:192.0.2.1"
SCOPE = "script-twin"


class Twins:
    """One limit, hit through the app's Lua check and through limits' own strategy."""

    def __init__(self, app, limit: str, strategy_class, copies: int = 1):
        self.checker = app.extensions[ratecheck.CHECKER_KEY]
        self.entries = (Entry(ALWAYS, parse(limit), SCOPE, per_person=False),) * copies
        self.item = self.entries[0].item
        self.library = strategy_class(app.extensions[LIMITER_KEY].storage)
        self.storage = app.extensions[LIMITER_KEY].storage
        self.keys = self.checker._storage_keys(self.entries[0].key(ADDRESS_KEY))  # current, previous

    def script_hit(self) -> tuple[bool, int]:
        """(allowed, remaining as the headers show it) for one request of a visitor without a session."""
        keys, args = self.checker._script_inputs(self.entries, "", ADDRESS_KEY)
        mode = "s" if self.checker.sliding else "f"
        _, refused, _, remaining = self.checker._run_script(["", *keys], ["0", mode, "1", *args])
        return refused == 0, remaining

    def library_hit(self) -> bool:
        return self.library.hit(self.item, KEY_PREFIX, ADDRESS_KEY, SCOPE)

    def library_remaining(self) -> int:
        return self.library.get_window_stats(self.item, KEY_PREFIX, ADDRESS_KEY, SCOPE).remaining

    def raw_window(self):
        """limits' own read: (previous count, previous TTL s, current count, current TTL s)."""
        return self.storage.get_sliding_window(self.item.key_for(KEY_PREFIX, ADDRESS_KEY, SCOPE), 60)


@pytest.mark.parametrize("strategy", ["sliding-window-counter", "fixed-window"])
def test_many_at_once_through_the_script_and_the_library_get_exactly_the_amount(
    make_app, redis_client, strategy
):
    app = make_app(RATELIMIT_STRATEGY=strategy)
    library_class = SlidingWindowCounterRateLimiter if strategy != "fixed-window" else FixedWindowRateLimiter
    twins = Twins(app, "25/minute", library_class)
    hits = [gevent.spawn(twins.library_hit if n % 2 else twins.script_hit) for n in range(60)]
    gevent.joinall(hits, timeout=60, raise_error=True)
    allowed = [h.value[0] if isinstance(h.value, tuple) else h.value for h in hits]
    assert allowed.count(True) == 25
    assert twins.library_remaining() == 0
    assert twins.script_hit() == (False, 0)
    lifetime = 60_000 if strategy == "fixed-window" else 120_000  # a sliding counter lives two windows
    assert lifetime - 60_000 < redis_client.pttl(twins.keys[0]) <= lifetime


def _past_due_window(redis_client, twins, count: int, ttl_ms: int, *, current: bool = True) -> None:
    """A 1-minute window of `count` hits whose TTL says it is over (a roll is due), or only its
    previous window (the current one gone, as when Redis evicts one key)."""
    redis_client.set(twins.keys[0 if current else 1], count, px=ttl_ms)


# 10 hits in a window with 45 s left: weight floor(10 x 45/60) = 7, and 3 s either side before it moves.
@pytest.mark.parametrize("rolled_by", ["library", "script"])
def test_a_window_rolled_by_either_side_weighs_the_same_on_the_other(make_app, redis_client, rolled_by):
    twins = Twins(make_app(), "10/minute", SlidingWindowCounterRateLimiter)
    _past_due_window(redis_client, twins, count=10, ttl_ms=45_000)
    if rolled_by == "library":
        assert twins.library_remaining() == 3
        assert [twins.script_hit() for _ in range(4)] == [(True, 2), (True, 1), (True, 0), (False, 0)]
    else:
        assert twins.script_hit() == (True, 2)
        assert twins.library_remaining() == 2
        assert [twins.library_hit() for _ in range(3)] == [True, True, False]
        assert twins.script_hit() == (False, 0)
    previous_count, previous_ttl, current_count, current_ttl = twins.raw_window()
    assert (previous_count, current_count) == (10, 3)
    # The script derives the previous TTL from the current one: they stay one window apart.
    assert abs(current_ttl - 60 - previous_ttl) < 0.5  # the library reads the two a moment apart


def test_a_previous_window_without_its_current_one_is_weighed_by_its_own_ttl(make_app, redis_client):
    twins = Twins(make_app(), "10/minute", SlidingWindowCounterRateLimiter)
    _past_due_window(redis_client, twins, count=10, ttl_ms=45_000, current=False)
    assert twins.script_hit() == (True, 2)
    assert twins.library_remaining() == 2


def test_a_short_window_rolls_in_real_time_as_limits_rolls_it(make_app):
    twins = Twins(make_app(), "5 per 2 seconds", SlidingWindowCounterRateLimiter)
    first = [gevent.spawn(twins.script_hit) for _ in range(8)]
    gevent.joinall(first, timeout=10, raise_error=True)
    assert [h.value[0] for h in first].count(True) == 5
    time.sleep(2.1)  # the current window is over: the next hit rolls it
    allowed, remaining = twins.script_hit()
    previous_count, previous_ttl, current_count, _ = twins.storage.get_sliding_window(
        twins.item.key_for(KEY_PREFIX, ADDRESS_KEY, SCOPE), 2
    )
    assert (previous_count, current_count) == (5, 1) and allowed
    # The weight only falls between the script's check and this read: never a smaller remaining.
    assert remaining <= twins.library_remaining() <= 4
    assert 0 < previous_ttl < 2


def test_a_counter_two_limits_share_is_checked_and_counted_by_each_in_turn(make_app, redis_client):
    # Each sees what the one before it left (a rolled window), and each counts the hit.
    twins = Twins(make_app(), "10/minute", SlidingWindowCounterRateLimiter, copies=2)
    assert twins.script_hit() == (True, 9)
    assert int(redis_client.get(twins.keys[0])) == 2  # created by the first, counted by the second
    _past_due_window(redis_client, twins, count=10, ttl_ms=45_000)
    assert [twins.script_hit()[0] for _ in range(3)] == [True, True, False]  # 7 + 0, 7 + 2, 7 + 4
    assert twins.raw_window()[::2] == (10, 4)
