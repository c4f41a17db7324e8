"""Where the whole box's CPU goes during a load step: cores used per process group, and idle."""

from __future__ import annotations

import os
from pathlib import Path

# First match wins: a process's command line decides its group.
GROUPS = (
    ("locust", "locust"),
    ("gunicorn", "app"),
    ("nginx", "nginx"),
    ("redis-server", "redis"),
    ("redis-sentinel", "redis"),
    ("postgres", "postgres"),
    ("pgbouncer", "pgbouncer"),
    ("fake_openai", "fakes"),
    ("fake_stripe", "fakes"),
)
TICK = os.sysconf("SC_CLK_TCK")


def _group(pid: str) -> str:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "other"
    for needle, group in GROUPS:
        if needle in cmdline:
            return group
    return "other"


def snapshot() -> dict:
    """CPU seconds per live process (with its group) and the box's busy/total seconds so far."""
    processes = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        processes[entry] = (_group(entry), (int(fields[11]) + int(fields[12])) / TICK)
    with open("/proc/stat") as handle:
        values = [int(v) for v in handle.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return {"processes": processes, "total": sum(values[:8]) / TICK, "idle": idle / TICK}


def usage(before: dict, after: dict) -> dict:
    """Cores used per group between two snapshots (processes gone by `after` are not counted),
    the box's busy cores and its idle cores."""
    wall = max(after["total"] - before["total"], 1e-9) / (os.cpu_count() or 1)
    groups: dict[str, float] = {}
    for pid, (group, seconds) in after["processes"].items():
        start = before["processes"].get(pid, (group, 0.0))[1]
        groups[group] = groups.get(group, 0.0) + max(seconds - start, 0.0)
    cores = {group: round(seconds / wall, 2) for group, seconds in sorted(groups.items()) if seconds > 0}
    idle = round((after["idle"] - before["idle"]) / wall, 2)
    return {"cores": cores, "idle_cores": idle, "busy_cores": round((os.cpu_count() or 1) - idle, 2)}
