"""bench/plateau.py: the knee search steps past the listed user counts until a step fails."""

import sys
from types import SimpleNamespace

import pytest

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


def _goodput_step(users, qpm, factor=None, phase="overload", capacity=3000):
    step = {"phase": phase, "users": users, "quizzes_per_min": qpm, "status_5xx": 0}
    step["started_refused"] = 0
    step.update(waiting_room={"p99_ms": 30, "answers": 0, "busy_answers": 0}, capacity=capacity)
    if factor:
        step["factor"] = factor
    return step


def test_overload_steps_repeat_interleaved_and_the_headline_is_their_median(tmp_path, monkeypatch):
    monkeypatch.setattr(plateau, "OVERLOAD_REPEATS", 3)
    monkeypatch.setattr(plateau, "PAIRED_REFERENCE", False)
    bench, ran = _fake_bench(tmp_path, knee_users=10**6)
    steps = plateau._overload(bench, None, 3000, [2, 4], 100, {})
    assert ran == [6000, 12000, 6000, 12000, 6000, 12000]  # interleaved: drift falls on both alike
    assert [s["repeat"] for s in steps] == [1, 1, 2, 2, 3, 3]

    ramp = [_goodput_step(3000, 1800.0, phase="ramp"), _goodput_step(3250, 2000.0, phase="ramp")]
    ramp[0].update(errors=0, page={"p99_ms": 40}, offered_rps=700, delivered_rps=700)
    ramp[1].update(errors=0, page={"p99_ms": 80}, offered_rps=780, delivered_rps=500)
    over = [
        _goodput_step(6000, 1900.0, 2),
        _goodput_step(12000, 1700.0, 4),
        _goodput_step(6000, 1840.0, 2),
        _goodput_step(12000, 1860.0, 4),
        _goodput_step(6000, 1800.0, 2),
        _goodput_step(12000, 1820.0, 4),
    ]
    heads = plateau.headlines(ramp + over)
    assert heads["knee"] == 3000 and heads["peak_goodput"] == 2000  # the peak: every app step's best
    assert heads["goodput_share"] == {2: 1840 / 2000, 4: 1820 / 2000}  # the medians, not one sample
    assert heads["goodput_share_range"] == {2: (0.9, 0.95), 4: (0.85, 0.93)}
    assert heads["goodput_share_of_knee"][4] == 1820 / 1800
    assert heads["overload_repeats"] == {2: 3, 4: 3}


def test_the_knee_region_runs_again_with_the_overload_window_and_the_peak_is_of_that_length(tmp_path):
    bench, ran = _fake_bench(tmp_path, knee_users=3000)
    ramp = plateau._ramp(bench, None, "ramp", [2750, 3000], 100, {})
    assert ran == [2750, 3000, 3250]
    reference = plateau._reference(bench, None, ramp, 3000, 300, {})
    assert ran[3:] == [3000, 3250]  # the knee and the first step past it, nothing else
    assert [s["phase"] for s in reference] == ["reference", "reference"]

    short = [_goodput_step(3000, 1850.0, phase="ramp"), _goodput_step(3250, 1950.0, phase="ramp")]
    short[0].update(errors=0, page={"p99_ms": 40}, offered_rps=700, delivered_rps=700)
    short[1].update(errors=0, page={"p99_ms": 80}, offered_rps=780, delivered_rps=500)
    long = [_goodput_step(3000, 1760.0, phase="reference"), _goodput_step(3250, 1790.0, phase="reference")]
    over = [_goodput_step(6000, 1810.0, 2), _goodput_step(12000, 1620.0, 4)]
    for s in short:
        s["window_s"] = 100
    for s in long + over:
        s["window_s"] = 300
    heads = plateau.headlines(short + long + over)
    assert heads["knee"] == 3000  # from the ramp's criteria
    # The 100 s steps' 1,950 is another window's count: the peak is the 300 s steps' best.
    assert heads["peak_goodput"] == 1810 and heads["peak_users"] == 6000
    assert heads["goodput_window_s"] == 300
    assert heads["goodput_share"] == {2: 1.0, 4: 1620 / 1810}
    assert heads["goodput_share_of_knee"] == {2: 1810 / 1760, 4: 1620 / 1760}  # the 300 s knee step


def test_without_reference_steps_every_step_has_one_window_and_the_peak_is_every_app_steps_best():
    steps = [_goodput_step(3000, 1800.0, phase="ramp"), _goodput_step(6000, 1700.0, 2)]
    steps[0].update(errors=0, page={"p99_ms": 40}, offered_rps=700, delivered_rps=700)
    for s in steps:
        s["window_s"] = 100
    heads = plateau.headlines(steps)
    assert heads["peak_goodput"] == 1800 and heads["goodput_share_of_knee"] == {2: 1700 / 1800}


def test_the_overload_capacity_is_where_the_knee_region_served_most_within_the_apps_criteria(
    tmp_path, monkeypatch
):
    def region(past_p99=46, past_errors=0, past_qpm=2143.0):
        at_knee = _goodput_step(2750, 2059.0, phase="reference")
        at_knee.update(errors=0, page={"p99_ms": 38}, offered_rps=660, delivered_rps=640)
        # Past the knee: the generator delivered 89 %, no knee step, but the app served it well.
        past = _goodput_step(3000, past_qpm, phase="reference")
        past.update(errors=past_errors, page={"p99_ms": past_p99}, offered_rps=722, delivered_rps=643)
        return [at_knee, past]

    assert plateau.overload_capacity(region(), 2750, "plateau") == 3000
    assert plateau.overload_capacity(region(past_p99=310), 2750, "plateau") == 2750  # slow: not served well
    assert plateau.overload_capacity(region(past_errors=2), 2750, "plateau") == 2750
    assert plateau.overload_capacity(region(past_qpm=2000.0), 2750, "plateau") == 2750  # past the peak
    assert plateau.overload_capacity(region(), 2750, "knee") == 2750
    assert plateau.overload_capacity(region(), 2750, "2900") == 2900
    assert plateau.overload_capacity([], 2750, "plateau") == 2750
    for typo in ("platau", "0", "-5", "", "users"):  # fail fast: never quietly another setting
        with pytest.raises(SystemExit, match="BENCH_OVERLOAD_CAPACITY"):
            plateau.overload_capacity(region(), 2750, typo)

    # The overload steps multiply the knee's users and set the plateau's capacity; the headline
    # keeps both apart, and the knee step's own goodput is still the knee's.
    monkeypatch.setattr(plateau, "OVERLOAD_REPEATS", 1)
    monkeypatch.setattr(plateau, "PAIRED_REFERENCE", False)
    capacities = []
    bench, ran = _fake_bench(tmp_path, knee_users=10**6)
    run_step = bench.run_step
    bench.run_step = lambda stack, users, seconds, **kw: (
        capacities.append(kw["capacity"]) or run_step(stack, users, seconds, **kw)
    )
    over = plateau._overload(bench, None, 2750, [2, 4], 300, {}, 3000)
    assert ran[-2:] == [5500, 11000] and capacities[-2:] == [3000, 3000]
    for step, qpm in zip(over, (1900.0, 1950.0), strict=True):
        step.update(quizzes_per_min=qpm, capacity=3000, status_5xx=0, started_refused=0)
        step["waiting_room"].update(p99_ms=30)
    heads = plateau.headlines(region() + over)
    assert (heads["knee_used"], heads["capacity"]) == (2750, 3000)
    assert heads["peak_goodput"] == 2143 and heads["goodput_share_of_knee"] == {
        2: 1900 / 2059,
        4: 1950 / 2059,
    }


def test_the_plateau_capacity_is_the_visitors_the_best_step_held(tmp_path):
    """Capacity counts slots (a hand-out to the quiz's submit), not simulated users, who spend part
    of each cycle outside a visit: "plateau" sets the slots the best knee-region step held."""
    import report

    def region(past_p99=46):
        at_knee = _goodput_step(2750, 2059.0, phase="reference")
        at_knee.update(errors=0, page={"p99_ms": 38}, slots={"median": 2410, "samples": 150})
        past = _goodput_step(3000, 2143.0, phase="reference")
        past.update(errors=0, page={"p99_ms": past_p99}, slots={"median": 2630, "samples": 150})
        return [at_knee, past]

    assert plateau.overload_capacity(region(), 2750, "plateau") == 2630
    assert plateau.overload_capacity(region(), 2750, "plateau-users") == 3000
    assert plateau.overload_capacity(region(past_p99=310), 2750, "plateau") == 2410  # the knee step's
    assert plateau.overload_capacity(region(past_p99=310), 2750, "plateau-users") == 2750
    assert plateau.overload_capacity([], 2750, "plateau") == 2750

    over = [_goodput_step(5500, 1950.0, factor=2, capacity=2630)]
    over[0].update(knee=2750, repeat=1)
    heads = plateau.headlines(region() + over)
    assert (heads["capacity"], heads["capacity_held_at"]) == (2630, 3000)
    said = report._capacity_of(heads)
    assert said.startswith("2630 visitors") and "3000-user step" in said
    assert report._held(region()[1]) == ", 2,630 visitors held" and report._held({}) == ""


def test_each_overload_repeat_opens_with_the_knee_and_is_also_a_share_of_it(tmp_path, monkeypatch):
    """The box drifts over a run: each overload step is also reported against the knee step
    measured in the same minutes (the repeat's opening step), beside the share of the run's peak."""
    monkeypatch.setattr(plateau, "OVERLOAD_REPEATS", 2)
    monkeypatch.setattr(plateau, "PAIRED_REFERENCE", True)
    bench, ran = _fake_bench(tmp_path, knee_users=10**6)
    steps = plateau._overload(bench, None, 3000, [2, 4], 300, {})
    assert ran == [3000, 6000, 12000, 3000, 6000, 12000]
    assert [(s["phase"], s["repeat"], s.get("paired", False)) for s in steps][::3] == [
        ("reference", 1, True),
        ("reference", 2, True),
    ]

    region = [_goodput_step(3000, 2000.0, phase="reference")]  # the knee region's, the run's peak
    first = [_goodput_step(3000, 1900.0, phase="reference"), _goodput_step(6000, 1805.0, 2)]
    first.append(_goodput_step(12000, 1710.0, 4))
    second = [_goodput_step(3000, 1600.0, phase="reference"), _goodput_step(6000, 1560.0, 2)]
    second.append(_goodput_step(12000, 1440.0, 4))  # slower minutes: every step alike
    for repeat, group in ((1, first), (2, second)):
        group[0].update(paired=True)
        for s in group:
            s["repeat"] = repeat
    for s in region + first + second:
        s["window_s"] = 300
        s.setdefault("knee", 3000)
    ramp = [_goodput_step(3000, 1500.0, phase="ramp")]
    ramp[0].update(errors=0, page={"p99_ms": 40}, offered_rps=700, delivered_rps=700, window_s=100)
    heads = plateau.headlines(ramp + region + first + second)
    assert heads["peak_goodput"] == 2000  # the strict share stays against the run's best step
    assert heads["goodput_share"] == {2: (1805 + 1560) / 2 / 2000, 4: (1710 + 1440) / 2 / 2000}
    assert heads["goodput_share_paired"] == {2: (0.95 + 0.975) / 2, 4: (0.9 + 0.9) / 2}
    assert heads["goodput_share_paired_range"] == {2: (0.95, 0.975), 4: (0.9, 0.9)}
    assert heads["goodput_share_of_knee"] == {2: (1805 + 1560) / 2 / 2000, 4: (1710 + 1440) / 2 / 2000}


def test_a_knee_every_run_step_met_is_reported_as_a_lower_bound():
    """The twin passed every step the run asked for: its knee is "at least" the last one, and the
    app's ratio to it "at most" the quotient."""
    import report

    def ramp_step(users, phase, delivered_share):
        step = _goodput_step(users, users * 0.7, phase=phase)
        offered = users * 0.24
        step.update(
            errors=0, page={"p99_ms": 20}, offered_rps=offered, delivered_rps=offered * delivered_share
        )
        return step

    twin = [ramp_step(u, "twin", 0.95) for u in (7000, 7500)]
    app = [ramp_step(4250, "ramp", 0.92), ramp_step(4500, "ramp", 0.86)]
    heads = plateau.headlines(twin + app + [_goodput_step(8500, 2900.0, 2, capacity=3893)])
    assert heads["knee"] == 4250 and not heads["knee_open"]
    assert heads["twin_knee"] == 7500 and heads["twin_knee_open"]
    knee_line = report.plateau_section([], heads)[2]
    assert (
        "Knee: 4250 users (twin: at least 7500 users, every step run met the criteria, ratio at most 0.57)"
        in knee_line
    )

    heads = plateau.headlines(
        [ramp_step(u, "twin", 0.95) for u in (7000, 7500)] + [ramp_step(4250, "twin", 0.5)]
    )
    assert not heads["twin_knee_open"]  # a step failed: the knee was found
