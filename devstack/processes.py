"""Ports, waits and stopping by pid: the process helpers every launcher and fake server shares."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
# Generous: on a machine saturated by other work a gevent worker can take many seconds to boot.
START_TIMEOUT = 120.0


def free_port(host="127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _ephemeral_low() -> int:
    """The first port of the kernel's range for outgoing connections' source ports."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_port_block(count: int, host: str = "127.0.0.1") -> int:
    """The first of `count` consecutive ports that are free right now, below the kernel's
    ephemeral range when there is room: the servers on them start one by one, and an outgoing
    connection of one started first (a replica to its primary, a Sentinel to the nodes) takes its
    source port from that range, so a block inside it can lose a port before its server binds."""
    low = _ephemeral_low()
    for _ in range(50):
        base = random.randrange(10000, low - count) if low - count > 10000 else free_port(host)
        if base + count > 65535:
            continue
        sockets = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind((host, port))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError(f"no block of {count} free ports found")


def wait_port(
    port: int, timeout: float = 60.0, proc: subprocess.Popen | None = None, host: str = "127.0.0.1"
) -> None:
    """Until something accepts connections on host:port; fails early if `proc` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {timeout}s")


def wait_http(url: str, timeout: float = START_TIMEOUT, proc: subprocess.Popen | None = None) -> None:
    """Until `url` answers below 500; fails early if `proc` exits first."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering {url}")
        try:
            if requests.get(url, timeout=5).status_code < 500:
                return
        except requests.RequestException as exc:
            last = exc
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout}s: {last}")


def wait_for(check, timeout: float, what: str, interval: float = 0.1):
    """Poll until check() is truthy and return it (generous deadlines: the machine is shared and busy)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_process(proc: subprocess.Popen | None, sig=signal.SIGTERM, timeout: float = 20.0) -> None:
    """Send `sig` to a child we started, wait up to `timeout`, then SIGKILL it."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def rank_session(pid: int, nice: int) -> bool:
    """Give the session of a process we started (each runs in its own) the niceness `nice`
    against every other session on the box; False when the kernel or our privilege says no.

    With autogroup scheduling on (kernel.sched_autogroup_enabled=1, the default of Debian's and
    Ubuntu's kernels), CFS shares the CPU between sessions first: nice(1) then ranks a process
    only among its own session's processes and does nothing against a busy neighbour. The
    session's own niceness, /proc/PID/autogroup, is what ranks it against the others."""
    try:
        Path(f"/proc/{pid}/autogroup").write_text(str(nice))
        return True
    except OSError:  # no autogroup (sched_autogroup off or absent), or no privilege to go below 0
        return False


def spawn_logged(
    command: list[str], log_path: Path, env: dict | None = None, cwd: Path = ROOT, **popen_kwargs
) -> subprocess.Popen:
    """Start `command` in its own session (from the repository root), output appended to log_path."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **popen_kwargs,
        )
