"""The hot path's Redis pipeline (quizapp/redis_fast.py), as gunicorn's workers run it: under gevent's
monkey-patching first, as wsgi.py does (a subprocess of its own), many greenlets, real Redis.
Exact counts, replies never crossed, failures contained."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from quizapp.redis_fast import FastCaller
from tests.conftest import REDIS_URL

ROOT = Path(__file__).resolve().parent.parent
PROBE = ROOT / "tests" / "support" / "pipeline_probe.py"


@pytest.fixture(scope="module")
def probe():
    """Every scenario, in one patched process; {name: figures}."""
    names = ["exact", "errors", "killed", "stale", "timeout", "noscript"]
    done = subprocess.run(
        [sys.executable, str(PROBE), *names],
        capture_output=True,
        text=True,
        timeout=180,
        env={"REDIS_URL": REDIS_URL, "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return {r.pop("scenario"): r for r in results}


def test_concurrent_callers_share_round_trips_with_exact_counts(probe):
    exact = probe["exact"]
    assert exact["total"] == 10_000  # 400 greenlets x 25 INCR: none lost, none doubled
    assert exact["mismatches"] == 0  # every GET answered its own caller's SET
    assert exact["commands"] == 30_000
    assert exact["round_trips"] * 4 <= exact["commands"]  # coalesced: many commands per write


def test_an_error_reply_reaches_its_own_caller_only(probe):
    errors = probe["errors"]
    assert errors["errors"] == 100 and errors["misrouted"] == 0
    assert errors["counts_exact"] and errors["after"] == "100"


def test_killed_callers_queued_are_never_sent_and_in_flight_ones_cross_nothing(probe):
    killed = probe["killed"]
    assert killed["taken_to_send_when_killed"] >= 10  # callers 0-9 were killed after that
    assert killed["queued_killed_sent"] == 0
    assert killed["in_flight_killed_sent"] == 10  # sent before the kill: run once, reply dropped
    assert killed["completed"] == 190 and killed["completed_sent_once"]
    assert killed["echoes_right"]  # the connection reads in step afterwards


def test_a_dropped_connection_is_replaced_and_nothing_runs_twice(probe):
    stale = probe["stale"]
    assert stale["killed"] >= 1
    assert stale["results_exact"] and stale["counter"] == 50


def test_a_stalled_redis_fails_every_waiting_caller_within_one_timeout(probe):
    paused = probe["timeout"]
    assert paused["timeouts"] == 100 and paused["others"] == []
    assert paused["slowest_s"] < 0.3 * 2  # one socket timeout for the batch and everyone behind it
    assert paused["after"] == "after the pause"  # a fresh connection once Redis answers again


def test_a_lost_script_is_loaded_again_and_each_call_runs_once(probe):
    assert probe["noscript"] == {"results_exact": True, "counter": 51}


def test_without_gevent_patching_each_call_is_its_own_round_trip():
    probe = "import redis, sys; from quizapp.redis_fast import FastCaller; print(FastCaller(redis.Redis()).pipelined)"
    unpatched = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert unpatched.stdout.strip() == "False", unpatched.stderr[-2000:]
    client = redis.Redis.from_url(REDIS_URL)
    lean = FastCaller(client, pipelined=False)
    assert lean("ECHO", "plain") == b"plain" and len(lean.idle) == 1
    client.close()
