"""Real SMTP for mail tests: a self-signed certificate, the aiosmtpd server process, mailer processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support.servers import ROOT, free_port
from tests.support.stack import wait_port

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
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    str(SMTP_SERVER),
                    "--port",
                    str(self.port),
                    "--cert",
                    str(self.cert),
                    "--key",
                    str(self.key),
                    "--out",
                    str(self.out),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={k: v for k, v in os.environ.items() if not k.startswith("GEVENT")},
            )
        wait_port(self.port, timeout=30, proc=self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def messages(self) -> list[dict]:
        if not self.out.exists():
            return []
        return [json.loads(line) for line in self.out.read_text().splitlines() if line.strip()]

    def url(self) -> str:
        return f"smtp+starttls://mailer:mail-secret@127.0.0.1:{self.port}"


def start_mailer(directory: Path, name: str, env: dict) -> subprocess.Popen:
    log = open(directory / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it open
    proc = subprocess.Popen(
        [sys.executable, "-m", "quizapp.mail.mailer"],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    return proc


def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def wait_for(check, timeout: float, what: str):
    """Poll until check() is truthy (generous deadline: the machine is shared and busy)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
