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
