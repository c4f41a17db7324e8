"""Zero-downtime: traffic through nginx survives a gunicorn HUP and a restart of one instance."""

import contextlib
import os
import signal
import time
from pathlib import Path

import gevent
import pytest
import requests

from devstack.stack import Stack

CLIENTS = 6


def _drive(url: str, stop: gevent.event.Event, tally: dict) -> None:
    """One client: alternate GET (Postgres+Redis readiness) and POST (never replayed) until told."""
    session = requests.Session()
    n = 0
    while not stop.is_set():
        n += 1
        try:
            if n % 2:
                response = session.get(url + "/readyz", timeout=60)
                ok = response.status_code == 200
            else:
                body = f"payload-{n}"
                response = session.post(url + "/_test/echo", data=body, timeout=60)
                ok = response.status_code == 200 and response.json() == {"echo": body}
        except requests.RequestException as exc:
            ok, response = False, exc
        tally["sent"] += 1
        if not ok:
            tally["failed"] += 1
            tally["examples"].append(repr(getattr(response, "status_code", response)))
    session.close()


@contextlib.contextmanager
def _driven(url: str):
    """CLIENTS clients driving url until the block ends; yields their tally (sent, failed, examples)."""
    tally = {"sent": 0, "failed": 0, "examples": []}
    stop = gevent.event.Event()
    clients = [gevent.spawn(_drive, url, stop, tally) for _ in range(CLIENTS)]
    try:
        yield tally
    finally:
        stop.set()
        gevent.joinall(clients, timeout=120, raise_error=True)


def _wait_for_new_workers(instance, old_log_len: int, booted: int, timeout=90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if instance.log_text()[old_log_len:].count("Booting worker") >= booted:
            return
        time.sleep(0.1)
    raise AssertionError("gunicorn did not boot new workers after HUP")


def _cpus(instance) -> set[frozenset]:
    """The CPU sets of an instance's master and its workers."""
    pid = instance.proc.pid
    workers = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return {frozenset(os.sched_getaffinity(int(p))) for p in [pid, *workers]}


@pytest.mark.integration
@pytest.mark.slow
def test_reload_and_restart_lose_no_request(tmp_path):
    stack = Stack(tmp_path, instances=2, workers=1, app_path="tests.support.opsapp:app", pin_cpus=True)
    with stack:
        # Pinned as make stack and the bench run them: each instance on its own CPU, after a restart too.
        pinned = [{frozenset({stack.cpu_of[i.port]})} for i in stack.instances]
        assert [_cpus(i) for i in stack.instances] == pinned
        assert len(set(stack.cpu_of.values())) == min(2, len(os.sched_getaffinity(0)))
        with _driven(stack.url) as tally:
            gevent.sleep(1.0)

            first = stack.instances[0]
            mark = len(first.log_text())
            first.signal(signal.SIGHUP)  # reload: new workers, old ones finish gracefully
            _wait_for_new_workers(first, mark, booted=1)
            gevent.sleep(1.0)
            during_hup = tally["sent"]

            old_pid = stack.instances[1].proc.pid
            # SIGTERM, wait for exit, start again on the same port; the listening socket stays open
            # (as with systemd's quizapp@.socket), so connections wait instead of failing.
            assert stack.restart_instance(1).proc.pid != old_pid
            gevent.sleep(1.5)
            assert [_cpus(i) for i in stack.instances] == pinned  # the HUP's new workers and the restart

    print(
        f"\n[figure] reload: {tally['sent']} requests, {tally['failed']} failed "
        f"(HUP of one instance + restart of the other, {CLIENTS} clients through nginx)"
    )
    assert tally["failed"] == 0, tally["examples"][:10]
    assert during_hup > 0 and tally["sent"] > during_hup
    # Both instances took traffic from nginx (least_conn spreads it).
    logs = [i.log_text() for i in stack.instances]
    assert all("/_test/echo" in log for log in logs)


@pytest.mark.integration
def test_recycled_workers_lose_no_request(tmp_path):
    """GUNICORN_MAX_REQUESTS under traffic through nginx, GETs and POSTs (which nginx does not
    retry): a recycling worker stops accepting, answers what nginx still sends on its open
    connections (with "Connection: close": test_ops_worker), and exits once they are closed; the
    master keeps the socket, so new connections wait for the new worker instead of failing."""
    env = {"GUNICORN_MAX_REQUESTS": "150", "GUNICORN_MAX_REQUESTS_JITTER": "30"}
    stack = Stack(tmp_path, instances=2, workers=1, app_path="tests.support.opsapp:app", env=env)
    with stack:

        def recycles() -> int:
            return sum(i.log_text().count("Autorestarting worker") for i in stack.instances)

        with _driven(stack.url) as tally:
            deadline = time.monotonic() + 60
            while recycles() < 6 and time.monotonic() < deadline:
                gevent.sleep(0.2)
        recycled = recycles()

    print(f"\n[figure] recycling: {tally['sent']} requests, {tally['failed']} failed, {recycled} recycles")
    assert recycled >= 6, "the workers were not recycled"
    assert tally["failed"] == 0, tally["examples"][:10]
