"""bench/plateau.py: the knee search steps past the listed user counts until a step fails."""

import sys
from types import SimpleNamespace

from devstack.processes import ROOT

sys.path.insert(0, str(ROOT / "bench"))

import plateau  # noqa: E402 - bench/ is a scripts directory, not a package


def _fake_bench(tmp_path, knee_users: int):
    """run_step answers a passing step up to knee_users and a generator-starved one above it."""
    ran = []

    def run_step(stack, users, seconds, **kwargs):
        ran.append(users)
        offered = users * 0.24
        delivered = offered if users <= knee_users else offered * 0.8
        return {
            "users": users,
            "errors": 0,
            "page": {"p99_ms": 20},
            "offered_rps": offered,
            "delivered_rps": delivered,
            "waiting_room": {"answers": 0, "busy_answers": 0},
        }

    return SimpleNamespace(run_step=run_step, STATE=tmp_path), ran


def test_the_ramp_goes_on_past_the_list_until_a_step_fails(tmp_path, monkeypatch):
    monkeypatch.setattr(plateau, "EXTRA_STEPS", 3)
    bench, ran = _fake_bench(tmp_path, knee_users=3000)
    steps = plateau._ramp(bench, None, "ramp", [2250, 2500, 2750], 100, {})
    assert ran == [2250, 2500, 2750, 3000, 3250]  # the list's last interval, then the first failure
    assert plateau.knee(steps) == 3000


def test_the_ramp_stops_at_the_first_failure_and_bounds_the_extra_steps(tmp_path, monkeypatch):
    monkeypatch.setattr(plateau, "EXTRA_STEPS", 2)
    bench, ran = _fake_bench(tmp_path, knee_users=2250)
    plateau._ramp(bench, None, "twin", [2000, 2250, 2500, 2750], 100, {})
    assert ran == [2000, 2250, 2500]  # 2,500 fails: nothing after it
    bench, ran = _fake_bench(tmp_path, knee_users=10**6)
    steps = plateau._ramp(bench, None, "twin", [1000], 100, {})
    assert ran == [1000, 2000, 3000]  # one listed step: its own size is the interval; at most 2 more
    assert plateau.knee(steps) == 3000
