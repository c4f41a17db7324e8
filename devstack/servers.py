"""Real gunicorn instances on loopback ports, plain or socket-activated as systemd does; stopped by pid."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

from devstack.processes import (
    ROOT,
    START_TIMEOUT,
    VENV_BIN,
    free_port,
    rank_session,
    spawn_logged,
    stop_process,
    wait_http,
)


class Gunicorn:
    """One gunicorn instance (gevent workers) on a loopback port."""

    def __init__(
        self,
        app_path="wsgi:app",
        workers=1,
        env=None,
        port=None,
        log_dir=None,
        extra_args=(),
        host="127.0.0.1",
        unix_socket=None,
        nice=0,
        cpu=None,
    ):
        self.host = host
        self.nice = nice  # e.g. -5: the door runs ahead of busy workers (root only; else a warning)
        self.cpu = cpu  # pinned to this CPU, master and workers (systemd: CPUAffinity=); None: not
        self.unix_socket = unix_socket  # also listen here (nginx's upstream), besides the port
        self.port = port or free_port()
        self.app_path = app_path
        self.workers = workers
        self.env = {**os.environ, **(env or {})}
        self.env.setdefault("GUNICORN_ACCESS_LOG", "")
        self.log_path = Path(log_dir or "/tmp") / f"gunicorn-{self.port}.log"
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def upstream(self) -> int | str:
        """What nginx proxies to: "unix:<path>" when the instance listens on a socket, else the port."""
        return f"unix:{self.unix_socket}" if self.unix_socket else self.port

    def command(self) -> list[str]:
        # BENCH_ROUTE_CPU=1: the same settings plus per-route CPU accounting (bench/route_cpu.py)
        routes = self.env.get("BENCH_ROUTE_CPU") == "1"
        config = ROOT / ("bench/route_cpu.conf.py" if routes else "gunicorn.conf.py")
        # nice execs gunicorn (same pid); without the privilege it warns and runs it unchanged.
        niced = ["nice", "-n", str(self.nice)] if self.nice else []
        # taskset execs the rest (same pid) already pinned: the workers it forks inherit the CPU.
        pinned = ["taskset", "--cpu-list", str(self.cpu)] if self.cpu is not None else []
        return [
            *pinned,
            *niced,
            str(VENV_BIN / "gunicorn"),
            "-c",
            str(config),
            *self.extra_args,
            self.app_path,
        ]

    def launch(self) -> Gunicorn:
        """Start the process without waiting for it (a stack launches all, then waits for all)."""
        self.env["GUNICORN_BIND"] = f"{self.host}:{self.port}"
        if self.unix_socket:
            Path(self.unix_socket).unlink(missing_ok=True)  # a previous run's leftover
            self.env["GUNICORN_BIND"] += f",unix:{self.unix_socket}"
        self.env["GUNICORN_WORKERS"] = str(self.workers)
        self.proc = spawn_logged(self.command(), self.log_path, env=self.env)
        if self.nice:
            rank_session(self.proc.pid, self.nice)  # its own session: nice alone ranks it among itself
        return self

    def wait_ready(self, timeout=START_TIMEOUT) -> Gunicorn:
        wait_http(self.url + "/healthz", timeout=timeout, proc=self.proc)
        return self

    def start(self, timeout=START_TIMEOUT) -> Gunicorn:
        return self.launch().wait_ready(timeout)

    def signal(self, sig) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def stop(self) -> None:
        stop_process(self.proc)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class SocketActivatedGunicorn(Gunicorn):
    """A gunicorn instance started the way systemd's quizapp@.socket starts it: the listening
    socket belongs to the caller (here the test), so while the instance restarts connections
    wait in the socket's backlog instead of being refused or reset."""

    def __init__(self, *args, listener: socket.socket | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if listener is None:
            listener = socket.socket()
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", self.port))
            listener.listen(2048)
        self.listener = listener

    def launch(self) -> SocketActivatedGunicorn:
        self.env.update(
            GUNICORN_BIND=f"127.0.0.1:{self.port}",
            GUNICORN_WORKERS=str(self.workers),
            LISTEN_FDS="1",
        )
        fd = self.listener.fileno()
        self.proc = spawn_logged(
            # sd_listen_fds protocol: the socket is fd 3 and LISTEN_PID is gunicorn's own pid.
            ["/bin/sh", "-c", 'LISTEN_PID=$$ exec "$@"', "sh", *self.command()],
            self.log_path,
            env=self.env,
            pass_fds=(3,),
            preexec_fn=lambda: os.dup2(fd, 3),  # noqa: PLW1509 - only dup2, async-signal-safe
        )
        return self

    def close_listener(self) -> None:
        self.listener.close()
