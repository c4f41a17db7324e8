"""App "hosts" for tests: network namespaces built by scripts/hosts.sh, or distinct loopback addresses."""

from __future__ import annotations

import os
import signal
import subprocess
import zlib
from pathlib import Path

from devstack.processes import ROOT
from devstack.servers import Gunicorn

HOSTS_SCRIPT = ROOT / "scripts" / "hosts.sh"


def run_name() -> str:
    """Unique per worktree and test run, short enough for interface names (<= 9 characters)."""
    return "q" + format(zlib.crc32(f"{ROOT}:{os.getpid()}".encode()) & 0xFFFFFF, "06x")


class Hosts:
    """`count` hosts; `namespaces` is None (with `why`) where namespaces could not be built."""

    def __init__(self, count: int = 2, name: str | None = None):
        self.count = count
        self.name = name or run_name()
        self.namespaces: list[str] | None = None
        self.why = ""
        self.addresses: list[str] = []
        self.gateways: list[str] = []
        self.services_address = "127.0.0.1"

    def up(self) -> Hosts:
        if os.environ.get("QUIZAPP_TEST_HOSTS") == "loopback":
            built = subprocess.CompletedProcess(
                [], 1, "", "QUIZAPP_TEST_HOSTS=loopback asks for no namespaces"
            )
        else:
            built = subprocess.run(
                ["bash", str(HOSTS_SCRIPT), "up", self.name, str(self.count)],
                capture_output=True,
                text=True,
                check=False,
            )
        if built.returncode != 0:
            # e.g. "mount --make-shared /run/netns failed: Operation not permitted" without CAP_SYS_ADMIN.
            self.why = (built.stderr.strip().splitlines() or ["hosts.sh failed"])[-1]
            self.down()
            # Fallback: distinct loopback addresses stand in for the hosts' own addresses.
            self.addresses = [f"127.0.15.{4 * i + 2}" for i in range(self.count)]
            self.gateways = ["127.0.0.1"] * self.count
            return self
        self.namespaces = []
        for line in built.stdout.splitlines():
            fields = line.split()
            if fields[0] == "services":
                self.services_address = fields[1]
            else:
                self.namespaces.append(fields[1])
                self.addresses.append(fields[2])
                self.gateways.append(fields[3])
        return self

    def down(self) -> None:
        subprocess.run(["bash", str(HOSTS_SCRIPT), "down", self.name], capture_output=True, check=False)

    def leftovers(self) -> str:
        """Anything of this run still on the machine (namespaces, links, addresses): '' when clean."""
        listing = subprocess.run(["ip", "-o", "netns", "list"], capture_output=True, text=True, check=False)
        links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=False)
        addresses = subprocess.run(
            ["ip", "-o", "addr", "show", "dev", "lo"], capture_output=True, text=True, check=False
        )
        text = listing.stdout + links.stdout + addresses.stdout
        return "\n".join(line for line in text.splitlines() if self.name in line)


class HostGunicorn(Gunicorn):
    """A gunicorn instance on one host: inside its namespace (or on its loopback address)."""

    def __init__(self, *args, address: str, namespace: str | None = None, **kwargs):
        super().__init__(*args, host=address, **kwargs)
        self.address = address
        self.namespace = namespace

    def command(self) -> list[str]:
        prefix = ["ip", "netns", "exec", self.namespace] if self.namespace else []
        return [*prefix, *super().command()]

    def start(self, timeout=60.0) -> HostGunicorn:
        return super().start(timeout)

    def kill_host(self) -> None:
        """The host dies: every process on it at once (SIGKILL), no goodbye to anyone."""
        if self.namespace:
            pids = subprocess.run(
                ["ip", "netns", "pids", self.namespace], capture_output=True, text=True, check=False
            )
            for pid in pids.stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
        elif self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=10)


def log_dir(tmp_path: Path) -> Path:
    path = tmp_path / "hosts"
    path.mkdir(exist_ok=True)
    return path
