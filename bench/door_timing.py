"""Where a waiting-room answer's time goes: nginx's timings per answer, and how long each process
of the stack waited for a CPU (the kernel's schedstat) during the measured window."""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

# The access line of nginx/quizapp.conf.template: total (rt), upstream (urt), connect (uct) and
# header (uht) times, the upstream tried, and the app's X-Admission.
LINE = re.compile(
    r'^(\S+) \[[^\]]+\] "\S+ \S+ [^"]*" \d{3} \d+ rid=\S* rt=([\d.]+) urt=(\S+) '
    r"uct=(\S+) uht=(\S+) up=.* adm=(\S+)"
)
ABUSER_IP = "127.0.0.66"  # bench/locustfile.py Abuser: ignores Retry-After, counted apart


# Who answered (up=) and what (adm=: wait, busy, admit, refused, or "-" for a page), and when.
DOOR_LINE = re.compile(r"^\S+ \[([^\]]+)\] .* up=(.*) adm=(\S+)")


def door_answers(log: Path, offset: int, *, door_port: int, since: float, until: float) -> Counter:
    """The door's answers logged after `offset` within [since, until] (Unix seconds), by kind."""
    text = log.read_bytes()[offset:].decode(errors="replace") if log.exists() else ""
    door = (f"door-{door_port}.sock", f":{door_port}")  # its Unix socket (the stack's), or its port
    kinds = Counter()
    for match in map(DOOR_LINE.match, text.splitlines()):
        if not match:
            continue
        # "a, b": b answered after a failed; "door : pool": the door handed the visitor to the pool
        # inside nginx (its X-Accel-Redirect), so the line's adm= is the pool's page and the
        # door's answer was an admission.
        first, *handed = match.group(2).split(" : ")
        if not first.split(",")[-1].strip().endswith(door):
            continue
        when = datetime.strptime(match.group(1), "%d/%b/%Y:%H:%M:%S %z").timestamp()
        if since <= when < until:
            kind = "admit" if handed else match.group(3)
            kinds["page" if kind == "-" else kind] += 1
    return kinds


def _last(value: str) -> float | None:
    """nginx writes one figure per upstream tried ("0.002, 0.010"): the one that answered."""
    try:
        return float(value.split(",")[-1].strip())
    except ValueError:
        return None


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def answer_timings(log: Path, offset: int, kind: str = "wait") -> dict:
    """p50/p99 in ms of nginx's times for the waiting room's answers written after `offset`."""
    text = log.read_bytes()[offset:].decode(errors="replace") if log.exists() else ""
    rows = [m.groups() for m in map(LINE.match, text.splitlines()) if m]
    rows = [r for r in rows if r[5] == kind and r[0] != ABUSER_IP]
    columns = {"rt": [], "urt": [], "uct": [], "uht": [], "nginx_own": []}
    for _, rt, urt, uct, uht, _ in rows:
        total, upstream = float(rt), _last(urt)
        columns["rt"].append(total * 1000)
        for name, value in (("urt", upstream), ("uct", _last(uct)), ("uht", _last(uht))):
            if value is not None:
                columns[name].append(value * 1000)
        columns["nginx_own"].append((total - (upstream or 0)) * 1000)  # nginx's own share
    out = {"answers": len(rows)}
    for name, values in columns.items():
        out[f"{name}_p50"] = round(_percentile(values, 0.5), 1)
        out[f"{name}_p99"] = round(_percentile(values, 0.99), 1)
    return out


def _schedstat(pid: int) -> tuple[int, int, int]:
    """(ns on a CPU, ns runnable but waiting for one, time slices) summed over the threads."""
    total = [0, 0, 0]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            fields = [int(x) for x in (task / "schedstat").read_text().split()]
        except (OSError, ValueError):
            continue
        total = [t + f for t, f in zip(total, fields, strict=False)]
    return total[0], total[1], total[2]


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def stack_processes(state: Path, redis_pid: int | None) -> dict[str, int]:
    """The door's worker, the pool's workers, nginx's worker and Redis, by role."""
    found = {}
    pools = 0
    for pidfile in sorted(state.glob("*.pid")):
        name, pid = pidfile.stem, int(pidfile.read_text().strip())
        if name.startswith("door"):
            role = "door"
        elif name.startswith("gunicorn"):
            role, pools = f"pool-{pools}", pools + 1
        elif name == "nginx":
            role = "nginx"
        else:
            continue
        for i, child in enumerate(_children(pid)):  # the workers (one each here)
            found[role if i == 0 else f"{role}.{i}"] = child
    if redis_pid:
        found["redis"] = redis_pid
    return found


class CpuWaits:
    """Samples the processes' schedstat when the measured window opens and closes (a thread)."""

    def __init__(self, processes: dict[str, int], opens_after: float, seconds: float):
        self.processes = processes
        self.samples: dict[str, tuple] = {}
        self.thread = threading.Thread(target=self._run, args=(opens_after, seconds), daemon=True)

    def start(self) -> CpuWaits:
        self.thread.start()
        return self

    def _run(self, opens_after: float, seconds: float) -> None:
        time.sleep(opens_after)
        self.samples["open"] = (time.monotonic(), {k: _schedstat(p) for k, p in self.processes.items()})
        self.opened_at = int(time.time()) + 1  # nginx logs whole seconds: count from the next one
        time.sleep(seconds)
        self.samples["close"] = (time.monotonic(), {k: _schedstat(p) for k, p in self.processes.items()})
        self.closed_at = int(time.time())

    def door_cpu_per_answer(self, log: Path, offset: int, *, door_port: int) -> dict:
        """The door's CPU per answer in the window (us), and its answers there by kind."""
        self.thread.join(timeout=5)
        if "close" not in self.samples or "door" not in self.processes:
            return {}
        kinds = door_answers(log, offset, door_port=door_port, since=self.opened_at, until=self.closed_at)
        ran = self.samples["close"][1]["door"][0] - self.samples["open"][1]["door"][0]
        span = self.samples["close"][0] - self.samples["open"][0]
        answered = sum(kinds.values()) * span / max(self.closed_at - self.opened_at, 1)
        return {"us": round(ran / 1e3 / max(answered, 1)), **kinds}

    def figures(self) -> dict:
        """Per process: CPU share, ms waiting for a CPU per second, and the mean wait per wake-up (us)."""
        self.thread.join(timeout=5)
        if "close" not in self.samples:
            return {}
        (t0, opened), (t1, closed) = self.samples["open"], self.samples["close"]
        elapsed = max(t1 - t0, 1e-9)
        out = {}
        for name in opened:
            ran, waited, slices = (c - o for c, o in zip(closed[name], opened[name], strict=True))
            out[name] = {
                "cpu_pct": round(100 * ran / 1e9 / elapsed, 1),
                "runq_ms_per_s": round(waited / 1e6 / elapsed, 1),
                "wait_per_wakeup_us": round(waited / 1e3 / max(slices, 1)),
            }
        return out
