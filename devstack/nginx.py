"""A local nginx from nginx/quizapp.conf.template (rendered by scripts/render_nginx.py)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
from pathlib import Path

from devstack.processes import ROOT, free_port, rank_session, stop_process, wait_port

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def _load_render_nginx():
    # scripts/render_nginx.py is also a production command (docs/deploy.md): loaded from there, not copied.
    spec = importlib.util.spec_from_file_location("render_nginx", ROOT / "scripts" / "render_nginx.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


render_nginx = _load_render_nginx()


class Nginx:
    """One nginx (daemon off) whose pid, logs and temp files live under `prefix`; stopped by pid."""

    def __init__(
        self,
        upstream_ports: list[int],
        prefix: Path,
        port: int | None = None,
        host: str = "127.0.0.1",
        expected_users: int = render_nginx.DEFAULT_EXPECTED_USERS,
        door: int | str | None = None,
        app_env: dict | None = None,
        nice: int = 0,
    ):
        self.upstream_ports = list(upstream_ports)
        # The edge pre-filter follows the app's limits: the instances' environment (with this
        # process's own beneath it), as an operator renders it from the app's env file.
        self.visitor_limit = render_nginx.edge_visitor_limit({**os.environ, **(app_env or {})})
        self.door = door  # the door instance's port or "unix:/path" (visitors without a pass), or None
        self.prefix = Path(prefix)
        self.port = port or free_port()
        self.host = host
        self.expected_users = expected_users
        self.nice = nice  # its session's niceness (rank_session): ahead of busy workers on a loaded box
        self.proc: subprocess.Popen | None = None

    # port, proc, url: what every local server here has (FakeOpenAIProcess, Gunicorn), not shared logic.
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def conf(self) -> Path:
        return self.prefix / "nginx.conf"

    def render(self) -> Path:
        return render_nginx.write_standalone(
            self.prefix,
            self.upstream_ports,
            f"{self.host}:{self.port}",
            expected_users=self.expected_users,
            door=self.door,
            visitor_limit=self.visitor_limit,
        )

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

    def check(self) -> None:
        """nginx -t on the rendered configuration; RuntimeError with nginx's own words if it fails."""
        result = subprocess.run(self.command("-t", "-q"), capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"nginx -t failed:\n{result.stderr}")

    def start(self) -> Nginx:
        self.render()
        with open(self.prefix / "stderr.log", "ab") as stderr:
            self.proc = subprocess.Popen(
                self.command(),
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
            )
        if self.nice:
            rank_session(self.proc.pid, self.nice)
        wait_port(self.port, proc=self.proc)
        return self

    def stop(self) -> None:
        stop_process(self.proc, sig=signal.SIGQUIT, timeout=10)  # graceful: finish in-flight requests

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
