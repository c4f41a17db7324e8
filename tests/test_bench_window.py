"""bench/load_step.py: the measured window opens a ramp after locust's first request, not its launch."""

import sys
from datetime import datetime

from devstack.processes import ROOT

sys.path.insert(0, str(ROOT / "bench"))

import load_step  # noqa: E402 - bench/ is a scripts directory, not a package


def line(addr: str, stamp: str) -> str:
    return f'{addr} [{stamp}] "GET / HTTP/1.1" 200 10 rid=x rt=0.004 urt=0.004 up=- adm=-\n'


def test_the_window_counts_from_the_first_simulated_persons_request(tmp_path):
    log = tmp_path / "access.log"
    earlier = line("127.0.0.1", "26/Nov/2026:14:00:00 +0000")  # an earlier step's probe
    log.write_text(earlier)
    offset = log.stat().st_size
    with log.open("a") as handle:
        handle.write(line("127.0.0.1", "26/Nov/2026:14:00:03 +0000"))  # the admin poller: not a person
        handle.write(line("127.1.0.2", "26/Nov/2026:14:00:05 +0000"))
        handle.write(line("127.2.0.2", "26/Nov/2026:14:00:06 +0000"))
    first = load_step.first_request(log, offset, default=0.0)
    assert first == datetime.fromisoformat("2026-11-26T14:00:05+00:00").timestamp()
    assert load_step.first_request(log, log.stat().st_size, default=42.0) == 42.0


def test_the_log_is_read_once_the_requests_in_flight_are_logged(tmp_path):
    """A submit still in flight when locust stops is logged late: integrity waits for it."""
    import threading
    import time

    log = tmp_path / "access.log"
    log.write_text(line("127.1.0.2", "26/Nov/2026:14:00:05 +0000"))

    def late_lines():
        for second in range(6, 9):  # three answers, 0.5 s apart, after locust has exited
            time.sleep(0.5)
            with log.open("a") as handle:
                handle.write(line("127.1.0.3", f"26/Nov/2026:14:00:0{second} +0000"))

    writer = threading.Thread(target=late_lines)
    started = time.monotonic()
    writer.start()
    load_step.settle_log(log, quiet=1.0, longest=10.0)
    waited = time.monotonic() - started
    writer.join()
    assert len(load_step.read_log(log, 0)[0]) == 4  # every late line was there when it returned
    assert 2.5 <= waited < 10.0  # it waited for the last line plus the quiet second, not the bound


def test_the_doors_handoffs_count_as_its_admissions(tmp_path):
    import door_timing

    log = tmp_path / "access.log"
    stamp = "26/Nov/2026:14:00:05 +0000"
    door, pool = "unix:/s/door-8000.sock", "unix:/s/gunicorn-8001.sock"
    rows = [
        (door, "wait"),
        (door, "-"),  # a first page, rendered by the door
        (f"{door} : {pool}", "-"),  # handed to the pool inside nginx: the door admitted
        (f"{door}, {pool} : {pool}", "-"),  # the door failed, its backup admitted and handed over
        (pool, "-"),
        (f"{door}, {pool}", "-"),  # the door failed: its backup answered
    ]
    log.write_text(
        "".join(f'127.1.0.2 [{stamp}] "GET / HTTP/1.1" 200 10 rid=x up={u} adm={a}\n' for u, a in rows)
    )
    when = datetime.strptime(stamp, "%d/%b/%Y:%H:%M:%S %z").timestamp()
    kinds = door_timing.door_answers(log, 0, door_port=8000, since=when, until=when + 1)
    assert kinds == {"wait": 1, "page": 1, "admit": 1}


def test_the_slot_sampler_counts_the_visitors_held_now(redis_client):
    """The overload capacity is read off the slots a step held (adm:active), as an operator reads
    the admin view's active visitors: only slots not yet expired count, and a Redis error is a
    missing sample, not a zero."""
    import os
    import time

    from quizapp.admission.repository import ACTIVE_KEY

    now_ms = int(time.time() * 1000)
    redis_client.zadd(ACTIVE_KEY, {"t1": now_ms + 60_000, "t2": now_ms + 90_000, "t3": now_ms - 1})
    assert load_step.slot_sampler(os.environ["REDIS_URL"])() == 2
    assert load_step.slot_sampler("redis://127.0.0.1:1/0")() is None  # nothing listens on port 1
    assert load_step.slot_figures([5, 1, 4, 2, 3]) == {"median": 3, "p10": 1, "p90": 5, "samples": 5}
    assert load_step.slot_figures([]) == {}


def test_the_integrity_read_waits_until_the_workers_have_nothing_left_in_flight():
    """Locust has stopped, but submits queued in a worker still run: drain returns only after two
    readings in a row of at most the health probe itself, and gives up at its bound."""
    readings = iter([7, 3, 0, 4, 1, 0, 9])
    seen = []

    def read():
        seen.append(next(readings))
        return seen[-1]

    assert load_step.drain(read, longest=10.0, every=0.0)
    assert seen == [7, 3, 0, 4, 1, 0]  # a lone quiet reading (0, then 4) is not enough

    unreadable = []

    def no_answer():
        unreadable.append(None)
        return None

    assert not load_step.drain(no_answer, longest=0.3, every=0.05)  # no health answer: not drained
    assert len(unreadable) >= 2
