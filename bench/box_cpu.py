"""Where the whole box's CPU goes during a load step: cores used per process group, and idle."""

from __future__ import annotations

import os
from pathlib import Path

# First match wins: a process's program (the start of its command line) decides its group.
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
    """The group named by the program, not by any argument: the first three words of the command
    line ("nginx: worker process", "python -m gunicorn", ".venv/bin/python .venv/bin/locust"), so a
    shell whose arguments merely mention "nginx" or "gunicorn" stays in "other"."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:3]
    except OSError:
        return "other"
    program = " ".join(word.decode(errors="replace").rsplit("/", 1)[-1] for word in argv)
    for needle, group in GROUPS:
        if needle in program:
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
    # user nice system idle iowait irq softirq steal: interrupts and steal belong to no process
    return {
        "processes": processes,
        "total": sum(values[:8]) / TICK,
        "idle": (values[3] + values[4]) / TICK,
        "interrupts": (values[5] + values[6]) / TICK,
        "steal": values[7] / TICK,
    }


def usage(before: dict, after: dict) -> dict:
    """Cores used per group between two snapshots, the box's busy and idle cores, the kernel's
    interrupt work (the loopback network's softirqs among it), the hypervisor's steal, and what no
    live process accounts for (processes that ended within the window, e.g. other jobs' short ones)."""
    wall = max(after["total"] - before["total"], 1e-9) / (os.cpu_count() or 1)
    groups: dict[str, float] = {}
    for pid, (group, seconds) in after["processes"].items():
        start = before["processes"].get(pid, (group, 0.0))[1]
        groups[group] = groups.get(group, 0.0) + max(seconds - start, 0.0)
    cores = {group: round(seconds / wall, 2) for group, seconds in sorted(groups.items()) if seconds > 0}
    idle = (after["idle"] - before["idle"]) / wall
    busy = (os.cpu_count() or 1) - idle
    kernel = {key: (after.get(key, 0) - before.get(key, 0)) / wall for key in ("interrupts", "steal")}
    unaccounted = max(busy - sum(groups.values()) / wall - sum(kernel.values()), 0.0)
    return {
        "cores": cores,
        "idle_cores": round(idle, 2),
        "busy_cores": round(busy, 2),
        "interrupt_cores": round(kernel["interrupts"], 2),
        "steal_cores": round(kernel["steal"], 2),
        "unaccounted_cores": round(unaccounted, 2),
    }
