"""Each gunicorn instance's CPU per request while a bench step runs, from /proc and nginx's access log.

    python bench/worker_cpu.py [var/bench/stack] [--window 15]    # beside `make bench`; Ctrl-C stops

Every window prints, per instance (its workers together): the requests nginx sent it (the access
log's `up=`), CPU ms per request, the kernel's share of that CPU, and context switches per request
(nonvoluntary: preempted while runnable; voluntary: it slept). A CPU-seconds measure, so a noisy
box moves it far less than latency; no tracer in the worker (unlike BENCH_ROUTE_CPU=1).
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TICK = 100  # USER_HZ: /proc's clock ticks on Linux
UPSTREAM = re.compile(rb" up=unix:\S*?-(\d+)\.sock")


def instances(state: Path) -> dict[str, list[int]]:
    """'gunicorn-PORT' / 'door-PORT' -> its worker pids, for every instance of the stack in `state`."""
    found = {}
    for pidfile in state.glob("*.pid"):
        if not pidfile.stem.startswith(("gunicorn-", "door-")):
            continue
        master = pidfile.read_text().strip()
        children = Path(f"/proc/{master}/task/{master}/children")
        if children.exists():
            found[pidfile.stem] = [int(pid) for pid in children.read_text().split()]
    return found


def counters(pids: list[int]) -> tuple[float, float, int, int] | None:
    """(user s, system s, voluntary, nonvoluntary context switches) of these processes together."""
    total = [0.0, 0.0, 0, 0]
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return None  # a worker went away: this window says nothing for its instance
        switches = dict(re.findall(r"^(\w+_ctxt_switches):\s+(\d+)", status, re.M))
        total[0] += int(fields[11]) / TICK
        total[1] += int(fields[12]) / TICK
        total[2] += int(switches["voluntary_ctxt_switches"])
        total[3] += int(switches["nonvoluntary_ctxt_switches"])
    return tuple(total)


def requests_per_port(log: Path, offset: int) -> tuple[dict[str, int], int]:
    with open(log, "rb") as handle:
        handle.seek(offset)
        data = handle.read()
    per_port: dict[str, int] = {}
    for port in UPSTREAM.findall(data):
        per_port[port.decode()] = per_port.get(port.decode(), 0) + 1
    return per_port, offset + len(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("state", nargs="?", default=str(ROOT / "var" / "bench" / "stack"))
    parser.add_argument("--window", type=float, default=15.0)
    args = parser.parse_args()
    state = Path(args.state)
    log = state / "nginx" / "access.log"
    while not log.exists():
        time.sleep(1)
    offset = log.stat().st_size
    while True:
        pids = instances(state)
        before = {name: counters(workers) for name, workers in pids.items()}
        time.sleep(args.window)
        per_port, offset = requests_per_port(log, offset)
        cells = []
        for name, workers in sorted(pids.items()):
            after, start = counters(workers), before[name]
            requests = per_port.get(name.split("-")[-1], 0)
            if not (after and start and requests):
                continue
            user, system = after[0] - start[0], after[1] - start[1]
            cpu = user + system
            preempted, slept = (after[3] - start[3]) / requests, (after[2] - start[2]) / requests
            cells.append(
                f"{name} {requests} req {1000 * cpu / requests:.2f} ms/req sys {system / max(cpu, 1e-9):.0%} "
                f"nvcsw/req {preempted:.1f} vcsw/req {slept:.1f}"
            )
        print(time.strftime("%H:%M:%S"), " | ".join(cells) or "no requests", flush=True)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
