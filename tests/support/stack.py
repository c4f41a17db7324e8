"""nginx (rendered from nginx/quizapp.conf.template) in front of real gunicorn instances, for tests."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.support.servers import ROOT, START_TIMEOUT, VENV_BIN, Gunicorn, free_port, wait_http

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def _load_render_nginx():
    spec = importlib.util.spec_from_file_location("render_nginx", ROOT / "scripts" / "render_nginx.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


render_nginx = _load_render_nginx()


def wait_port(port: int, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {timeout}s")


class Nginx:
    """One nginx (daemon off) whose pid, logs and temp files live in a tmp dir; stopped by pid."""

    def __init__(self, upstream_ports: list[int], prefix: Path, port: int | None = None):
        self.upstream_ports = list(upstream_ports)
        self.prefix = Path(prefix)
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def conf(self) -> Path:
        return self.prefix / "nginx.conf"

    def render(self) -> Path:
        return render_nginx.write_standalone(self.prefix, self.upstream_ports, f"127.0.0.1:{self.port}")

    def command(self, *extra: str) -> list[str]:
        return [
            NGINX,
            "-p",
            str(self.prefix),
            "-e",
            str(self.prefix / "error.log"),
            "-c",
            str(self.conf),
            *extra,
        ]

    def start(self) -> Nginx:
        self.render()
        with open(self.prefix / "stderr.log", "ab") as stderr:
            self.proc = subprocess.Popen(
                self.command(),
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
            )
        wait_port(self.port, proc=self.proc)
        return self

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGQUIT)  # graceful: finish in-flight requests
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def error_log(self) -> str:
        path = self.prefix / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def access_log(self) -> str:
        path = self.prefix / "access.log"
        return path.read_text(errors="replace") if path.exists() else ""

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

    def start(self, timeout=START_TIMEOUT) -> SocketActivatedGunicorn:
        self.env.update(
            GUNICORN_BIND=f"127.0.0.1:{self.port}",
            GUNICORN_WORKERS=str(self.workers),
            LISTEN_FDS="1",
        )
        fd = self.listener.fileno()
        command = [
            str(VENV_BIN / "gunicorn"),
            "-c",
            str(ROOT / "gunicorn.conf.py"),
            *self.extra_args,
            self.app_path,
        ]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                # sd_listen_fds protocol: the socket is fd 3 and LISTEN_PID is gunicorn's own pid.
                ["/bin/sh", "-c", 'LISTEN_PID=$$ exec "$@"', "sh", *command],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                pass_fds=(3,),
                preexec_fn=lambda: os.dup2(fd, 3),  # noqa: PLW1509 - only dup2, async-signal-safe
            )
        wait_http(self.url + "/healthz", timeout=timeout, proc=self.proc)
        return self

    def close_listener(self) -> None:
        self.listener.close()


class Stack:
    """N gunicorn instances (each `workers` gevent workers) behind one nginx, all on loopback."""

    def __init__(
        self,
        tmp_path: Path,
        instances=2,
        workers=1,
        app_path="wsgi:app",
        env=None,
        socket_activated=True,
    ):
        self.tmp_path = Path(tmp_path)
        self.socket_activated = socket_activated
        self.app_path = app_path
        self.workers = workers
        self.env = {
            "RATELIMIT_ENABLED": "false",
            "HEARTBEAT_SECONDS": "0.5",
            "GUNICORN_GRACEFUL_TIMEOUT": "10",
            **(env or {}),
        }
        self.instances = [self._gunicorn(free_port()) for _ in range(instances)]
        self.nginx = Nginx([g.port for g in self.instances], self.tmp_path / "nginx")

    def _gunicorn(self, port: int, listener=None) -> Gunicorn:
        env = {**self.env, "INSTANCE_NAME": f"test-{port}", "GUNICORN_ACCESS_LOG": "-"}
        kwargs = {
            "workers": self.workers,
            "env": env,
            "port": port,
            "log_dir": self.tmp_path,
        }
        if self.socket_activated:
            return SocketActivatedGunicorn(self.app_path, listener=listener, **kwargs)
        return Gunicorn(self.app_path, **kwargs)

    @property
    def url(self) -> str:
        return self.nginx.url

    def start(self) -> Stack:
        for instance in self.instances:
            instance.start()
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
        for instance in self.instances:
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


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
