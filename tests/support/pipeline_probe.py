"""Scenarios for quizapp/redis_fast.py's pipeline, run the way gunicorn's workers run it: under gevent's
monkey-patching, many greenlets, against the real Redis (REDIS_URL). Prints one JSON object per
scenario named on the command line; tests/test_redis_pipeline.py asserts on them.

    python tests/support/pipeline_probe.py exact errors killed stale timeout noscript
"""

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
import redis  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from quizapp.redis_fast import FastCaller, pipeline_for  # noqa: E402

URL = os.environ["REDIS_URL"]
PREFIX = "probe:pipe:"


def fresh(**options):
    """A client of its own (its own pool, so its own pipeline) and a plain one to look with."""
    client = redis.Redis.from_url(URL, **options)
    lean = FastCaller(client)
    assert lean.pipelined, "the pipeline needs gevent's monkey-patching"
    return client, lean, pipeline_for(client.connection_pool)


def scenario_exact():
    """400 greenlets x 25 rounds: each sets its own key, reads it back, counts once."""
    client, lean, pipeline = fresh()
    mismatches = []

    def worker(n):
        for i in range(25):
            value = f"{n}-{i}".encode()
            assert lean("SET", f"{PREFIX}own:{n}", value) == b"OK"
            got = lean("GET", f"{PREFIX}own:{n}")
            if got != value:
                mismatches.append((n, i, got))
            lean("INCR", PREFIX + "total")

    gevent.joinall([gevent.spawn(worker, n) for n in range(400)], raise_error=True)
    return {
        "total": int(client.get(PREFIX + "total")),
        "mismatches": len(mismatches),
        "commands": pipeline.commands,
        "round_trips": pipeline.round_trips,
    }


def scenario_errors():
    """Error replies in the middle of batches go to their own callers only."""
    client, lean, pipeline = fresh()
    client.set(PREFIX + "text", "not a number")
    outcomes = {}

    def worker(n):
        key = PREFIX + ("text" if n % 2 else "count")
        try:
            outcomes[n] = ("ok", lean("INCR", key))
        except redis.exceptions.ResponseError as exc:
            outcomes[n] = ("error", str(exc)[:40])

    gevent.joinall([gevent.spawn(worker, n) for n in range(200)], raise_error=True)
    wrong = [n for n, (kind, _) in outcomes.items() if (kind == "error") != bool(n % 2)]
    counts = sorted(value for kind, value in outcomes.values() if kind == "ok")
    return {
        "errors": sum(1 for kind, _ in outcomes.values() if kind == "error"),
        "misrouted": len(wrong),
        "counts_exact": counts == list(range(1, 101)),
        "after": lean("GET", PREFIX + "count").decode(),
        "round_trips": pipeline.round_trips,
    }


def scenario_killed():
    """Callers killed while queued are never sent; killed while in flight, their replies are dropped."""
    client, lean, pipeline = fresh()
    # No connection yet: the writer takes the first batch and waits for its connect, so the rest stay
    # queued (a kill is a callback of the hub: it would come after a writer already running).
    finished = {}

    def worker(n):
        finished[n] = lean("SET", f"{PREFIX}k:{n}", n, "GET")  # the old value: None unless sent twice

    greenlets = [gevent.spawn(worker, n) for n in range(300)]
    gevent.sleep(0)  # every caller has queued its command; the pipeline has not started yet
    for g in greenlets[200:]:
        g.kill(block=False)  # still queued: must never reach Redis
    gevent.sleep(0)  # the kills have run; the writer holds the first batch, connecting to send it
    taken = 200 - len(pipeline.queue)  # commands the writer took to send: no longer cancellable
    for g in greenlets[:10]:
        g.kill(block=False)  # their commands are in the writer's batch: sent, whatever happens
    gevent.joinall(greenlets)
    echoes = {}

    def echo(n):
        echoes[n] = lean("ECHO", f"after-{n}")

    gevent.joinall([gevent.spawn(echo, n) for n in range(50)], raise_error=True)
    exists = [bool(client.exists(f"{PREFIX}k:{n}")) for n in range(300)]
    return {
        "taken_to_send_when_killed": taken,
        "queued_killed_sent": sum(exists[200:]),
        "in_flight_killed_sent": sum(exists[:10]),
        "completed": len(finished),
        "completed_sent_once": all(v is None for v in finished.values()) and all(exists[10:200]),
        "echoes_right": all(echoes[n] == f"after-{n}".encode() for n in range(50)),
    }


def scenario_stale():
    """Redis dropped every connection (as on a restart): the next batch goes out once, on a fresh one."""
    client, lean, pipeline = fresh()
    gevent.joinall([gevent.spawn(lean, "PING") for _ in range(20)])
    killed = redis.Redis.from_url(URL).client_kill_filter(_type="normal", skipme=True)
    results = [
        g.value for g in gevent.joinall([gevent.spawn(lean, "INCR", PREFIX + "stale") for _ in range(50)])
    ]
    return {
        "killed": killed,
        "results_exact": sorted(results) == list(range(1, 51)),
        "counter": int(client.get(PREFIX + "stale")),
    }


def scenario_timeout():
    """Redis stops answering writes: every waiting caller fails within about one socket timeout."""
    client, lean, pipeline = fresh(socket_timeout=0.3)
    lean("PING")
    control = redis.Redis.from_url(URL)
    control.execute_command("CLIENT", "PAUSE", 1500, "WRITE")
    outcomes = []

    def worker(n):
        started = time.monotonic()
        try:
            lean("INCR", PREFIX + "paused")
            outcomes.append(("ok", time.monotonic() - started))
        except redis.exceptions.TimeoutError:
            outcomes.append(("timeout", time.monotonic() - started))
        except redis.exceptions.ConnectionError:
            outcomes.append(("connection", time.monotonic() - started))

    started = time.monotonic()
    gevent.joinall([gevent.spawn(worker, n) for n in range(100)])
    all_failed_in = time.monotonic() - started
    control.execute_command("CLIENT", "UNPAUSE")
    after = lean("ECHO", "after the pause")
    return {
        "timeouts": sum(1 for kind, _ in outcomes if kind == "timeout"),
        "others": sorted({kind for kind, _ in outcomes if kind != "timeout"}),
        "slowest_s": round(max(seconds for _, seconds in outcomes), 3),
        "all_failed_in_s": round(all_failed_in, 3),
        "after": after.decode(),
    }


def scenario_noscript():
    """A script Redis lost is loaded again; each of 50 concurrent calls runs exactly once."""
    client, lean, pipeline = fresh()
    script = client.register_script("return redis.call('INCR', KEYS[1])")
    lean.evalsha(script, [PREFIX + "script"], [])
    client.script_flush()
    results = [
        g.value
        for g in gevent.joinall(
            [gevent.spawn(lean.evalsha, script, [PREFIX + "script"], []) for _ in range(50)]
        )
    ]
    return {
        "results_exact": sorted(results) == list(range(2, 52)),
        "counter": int(client.get(PREFIX + "script")),
    }


def main(names):
    cleaner = redis.Redis.from_url(URL)
    for name in names:
        for key in cleaner.scan_iter(PREFIX + "*"):
            cleaner.delete(key)
        print(json.dumps({"scenario": name, **globals()[f"scenario_{name}"]()}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
