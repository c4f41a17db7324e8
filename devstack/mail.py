"""Real SMTP for mail tests: a self-signed certificate, the aiosmtpd server process, mailer processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from devstack.processes import free_port, spawn_logged, stop_process, wait_port

SMTP_SERVER = Path(__file__).resolve().parent / "smtp_server.py"


def make_certificate(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


class SmtpServer:
    """aiosmtpd in its own process on a fixed port, so it can go away and come back (an outage)."""

    def __init__(self, directory: Path, cert: Path, key: Path, port: int | None = None):
        self.port = port or free_port()
        self.cert, self.key = cert, key
        self.out = directory / f"smtp-{self.port}.jsonl"
        self.log = directory / f"smtp-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> SmtpServer:
        command = [sys.executable, str(SMTP_SERVER), "--port", str(self.port)]
        command += ["--cert", str(self.cert), "--key", str(self.key), "--out", str(self.out)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("GEVENT")}
        self.proc = spawn_logged(command, self.log, env=env)
        wait_port(self.port, timeout=30, proc=self.proc)
        return self

    def stop(self) -> None:
        stop_process(self.proc, timeout=15)

    def messages(self) -> list[dict]:
        if not self.out.exists():
            return []
        return [json.loads(line) for line in self.out.read_text().splitlines() if line.strip()]

    def url(self) -> str:
        return f"smtp+starttls://mailer:mail-secret@127.0.0.1:{self.port}"


def start_mailer(directory: Path, name: str, env: dict) -> subprocess.Popen:
    """quizapp.mail.mailer in its own session, output in directory/name.log (`make stack` and tests)."""
    command = [sys.executable, "-m", "quizapp.mail.mailer"]
    return spawn_logged(command, directory / f"{name}.log", env={**os.environ, **env})
