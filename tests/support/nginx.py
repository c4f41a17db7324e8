"""Start a real nginx (daemon off, everything under a tmp dir) in front of upstreams; stop by pid."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from tests.support.servers import free_port, wait_http

NGINX_BIN = "/usr/sbin/nginx"

CONFIG_TEMPLATE = """
daemon off;
master_process on;
worker_processes 1;
{user_line}
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;
events {{ worker_connections 1024; }}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    client_max_body_size {client_max_body_size};
    upstream quizapp {{
        least_conn;
{servers}
        keepalive 16;
    }}
    server {{
        listen {listen}:{port};
        location / {{
            proxy_pass http://quizapp;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Request-ID $request_id;
{extra_location}
        }}
{extra_server}
    }}
{extra_http}
}}
"""


class Nginx:
    """One nginx on a free loopback port proxying to `upstreams` ("127.0.0.1:8001", ...)."""

    def __init__(
        self,
        upstreams,
        port=None,
        listen="127.0.0.1",
        client_max_body_size="20m",
        extra_location="",
        extra_server="",
        extra_http="",
    ):
        """extra_*: raw nginx directives added inside `location /`, `server` and `http`."""
        self.upstreams = list(upstreams)
        self.port = port or free_port()
        self.listen = listen
        self.client_max_body_size = client_max_body_size
        self.extra_location = extra_location
        self.extra_server = extra_server
        self.extra_http = extra_http
        self.tmp = Path(tempfile.mkdtemp(prefix="nginx-test-"))
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.listen}:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.tmp / "nginx.conf"

    def write_config(self) -> Path:
        servers = "\n".join(f"        server {upstream};" for upstream in self.upstreams)
        # As root nginx would switch its workers to "nobody", who cannot write our tmp dir.
        user_line = "user root;" if os.geteuid() == 0 else ""
        self.config_path.write_text(
            CONFIG_TEMPLATE.format(
                tmp=self.tmp,
                user_line=user_line,
                servers=servers,
                listen=self.listen,
                port=self.port,
                client_max_body_size=self.client_max_body_size,
                extra_location=self.extra_location,
                extra_server=self.extra_server,
                extra_http=self.extra_http,
            )
        )
        return self.config_path

    def start(self, health_path="/healthz", timeout=15.0) -> Nginx:
        self.write_config()
        log = open(self.tmp / "stderr.log", "ab")
        self.proc = subprocess.Popen(
            [NGINX_BIN, "-p", str(self.tmp), "-c", str(self.config_path), "-e", str(self.tmp / "error.log")],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        wait_http(self.url + health_path, timeout=timeout, proc=self.proc)
        return self

    def reload(self) -> None:
        """Re-read a changed config (e.g. new upstreams) without dropping connections."""
        self.write_config()
        os.kill(self.proc.pid, signal.SIGHUP)

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
        path = self.tmp / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def __enter__(self):
        return self.start()

    def cleanup(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __exit__(self, *exc):
        self.stop()
        self.cleanup()
