"""Start real gunicorn processes for tests and stop them by pid."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
# Generous: on a machine saturated by other work a gevent worker can take many seconds to boot.
START_TIMEOUT = 120.0


def free_port(host="127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout: float = START_TIMEOUT, proc: subprocess.Popen | None = None) -> None:
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


class Gunicorn:
    """One gunicorn instance (gevent workers) on a loopback port."""

    def __init__(self, app_path="wsgi:app", workers=1, env=None, port=None, log_dir=None, extra_args=()):
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
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout=START_TIMEOUT) -> Gunicorn:
        self.env["GUNICORN_BIND"] = f"127.0.0.1:{self.port}"
        self.env["GUNICORN_WORKERS"] = str(self.workers)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [
                str(VENV_BIN / "gunicorn"),
                "-c",
                str(ROOT / "gunicorn.conf.py"),
                *self.extra_args,
                self.app_path,
            ],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        wait_http(self.url + "/healthz", timeout=timeout, proc=self.proc)
        return self

    def signal(self, sig) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
