"""The local topology, one launcher for all: N gunicorn instances behind one nginx, all on loopback.

Tests use `Stack` directly; `make stack` (devstack.local_stack) and the bench start it through the same
class and keep its pids in a state directory.
"""

from __future__ import annotations

import os
from pathlib import Path

from devstack.nginx import Nginx, render_nginx
from devstack.processes import START_TIMEOUT, free_port
from devstack.servers import Gunicorn, SocketActivatedGunicorn

# What the tests' instances run with unless a test says otherwise: no limits in the way, fast
# heartbeats, a short graceful timeout.
UNIX_PATH_MAX = 100  # sun_path holds 107 bytes; a deeper state directory keeps TCP
TEST_ENV = {"RATELIMIT_ENABLED": "false", "HEARTBEAT_SECONDS": "0.5", "GUNICORN_GRACEFUL_TIMEOUT": "10"}


DOOR_NICE = -10  # the door's session niceness (rank_session): ahead of the busy pool on a loaded box
EDGE_NICE = -10  # nginx's and the local Redis's: every answer, the waiting room's too, waits for both


def spread_over_cpus(ports: list[int]) -> dict[int, int]:
    """Each instance's CPU, in turn over the CPUs this process may use: with one instance per core,
    each keeps its core. Unpinned, the scheduler often ran both on the core that woke them (nginx's),
    and the page p99 of a 1,125-user quick step was 0.9-2.0 s against 0.1-0.2 s pinned."""
    cpus = sorted(os.sched_getaffinity(0))
    return {port: cpus[i % len(cpus)] for i, port in enumerate(ports)}


class Stack:
    """N gunicorn instances (each `workers` gevent workers) behind one nginx, all on loopback;
    with `door`, one more instance (1 worker) answers visitors who hold no admission pass."""

    # Keyword settings with defaults, alike in shape to PgBouncer's and RedisHA's: each its own knobs.
    def __init__(
        self,
        tmp_path: Path,
        instances=2,
        workers=1,
        app_path="wsgi:app",
        env=None,
        socket_activated=True,
        *,
        ports: list[int] | None = None,
        nginx_port: int | None = None,
        host: str = "127.0.0.1",
        expected_users: int = render_nginx.DEFAULT_EXPECTED_USERS,
        instance_prefix: str = "test",
        access_log: str = "-",
        defaults: dict | None = None,
        unix_sockets: bool = False,
        door: bool = False,
        door_port: int | None = None,
        door_nice: int = DOOR_NICE,
        edge_nice: int = 0,
        pin_cpus: bool = False,
        cpu_of: dict[int, int] | None = None,
    ):
        self.tmp_path = Path(tmp_path)
        # nginx reaches each instance over a Unix socket (the instance keeps its port for probes):
        # no loopback TCP on the proxied leg, as the deploy guide describes. Plain gunicorn only.
        self.unix_sockets = unix_sockets and not socket_activated
        self.socket_activated = socket_activated
        self.app_path = app_path
        self.workers = workers
        self.instance_prefix = instance_prefix
        self.access_log = access_log
        self.env = {**(TEST_ENV if defaults is None else defaults), **(env or {})}
        ports = ports or [free_port() for _ in range(instances)]
        # One pool instance per CPU, each pinned to its own (cpu_of: a restart keeps the CPU it had).
        self.cpu_of = dict(cpu_of if cpu_of is not None else spread_over_cpus(ports) if pin_cpus else {})
        self.instances = [self._gunicorn(port) for port in ports]
        self.door_nice = door_nice
        self.door = self.door_gunicorn(door_port or free_port(), nice=door_nice) if door else None
        self.nginx = Nginx(
            [g.upstream for g in self.instances],
            self.tmp_path / "nginx",
            port=nginx_port,
            host=host,
            expected_users=expected_users,
            door=self.door.upstream if self.door else None,
            app_env=self.env,
            nice=edge_nice,
        )

    def _gunicorn(self, port: int, listener=None) -> Gunicorn:
        env = {
            **self.env,
            "INSTANCE_NAME": f"{self.instance_prefix}-{port}",
            "GUNICORN_ACCESS_LOG": self.access_log,
        }
        kwargs = {
            "workers": self.workers,
            "env": env,
            "port": port,
            "log_dir": self.tmp_path,
            "cpu": self.cpu_of.get(port),
        }
        if self.socket_activated:
            return SocketActivatedGunicorn(self.app_path, listener=listener, **kwargs)
        socket = (self.tmp_path / f"gunicorn-{port}.sock").resolve()
        if self.unix_sockets and len(str(socket)) < UNIX_PATH_MAX:
            kwargs["unix_socket"] = socket
        return Gunicorn(self.app_path, **kwargs)

    def door_gunicorn(self, port: int, nice: int = DOOR_NICE) -> Gunicorn:
        """The door: the same app, one worker, plain gunicorn (a Unix socket like the pool's)."""
        env = {**self.env, "INSTANCE_NAME": f"{self.instance_prefix}-door-{port}", "ADMISSION_DOOR": "true"}
        env["GUNICORN_ACCESS_LOG"] = self.access_log
        socket = (self.tmp_path / f"gunicorn-door-{port}.sock").resolve()
        unix = socket if self.unix_sockets and len(str(socket)) < UNIX_PATH_MAX else None
        return Gunicorn(
            self.app_path, workers=1, env=env, port=port, log_dir=self.tmp_path, unix_socket=unix, nice=nice
        )

    @property
    def url(self) -> str:
        return self.nginx.url

    @property
    def servers(self) -> list[Gunicorn]:
        """Every gunicorn instance: the pool, then the door if there is one."""
        return [*self.instances, *([self.door] if self.door else [])]

    def start(self, timeout=START_TIMEOUT) -> Stack:
        """Launch every instance, wait until each answers /healthz, then nginx in front of them."""
        for instance in self.servers:
            instance.launch()
        for instance in self.servers:
            instance.wait_ready(timeout)
        self.nginx.render()
        self.nginx.check()
        self.nginx.start()
        return self

    def restart_instance(self, index: int) -> Gunicorn:
        """Stop one instance gracefully and start a fresh one on the same port."""
        old = self.instances[index]
        old.stop()
        fresh = self._gunicorn(old.port, listener=getattr(old, "listener", None))
        self.instances[index] = fresh
        return fresh.start()

    def stop(self) -> None:
        self.nginx.stop()
        for instance in self.servers:
            instance.stop()
            if isinstance(instance, SocketActivatedGunicorn):
                instance.close_listener()

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc):
        self.stop()
