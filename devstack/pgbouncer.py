"""PgBouncer in transaction pooling mode in front of one Postgres: render its config, start, stop.

Used by `make stack`, the tests and scripts/pgbouncer.py; production runs the Debian service with the
same settings (docs/scale-out.md).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

from devstack.processes import stop_process, wait_port

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


class PgBouncer:
    """One pgbouncer process; its files live in a directory the postgres user can write when root."""

    def __init__(
        self,
        upstream_url: str,
        port: int,
        state_dir: str | Path | None = None,
        listen: str = "127.0.0.1",
        pool_size: int = 20,
        max_client_conn: int = 2000,
        tls: dict | None = None,
    ):
        self.upstream = urlparse(upstream_url)
        self.port = port
        self.listen = listen
        self.pool_size = pool_size
        self.max_client_conn = max_client_conn
        self.tls = tls or {}
        # pgbouncer refuses to run as root: it switches to `postgres`, which must reach its files.
        self.state_dir = Path(state_dir or tempfile.mkdtemp(prefix="quizapp-pgbouncer-"))
        self.own_dir = state_dir is None  # made here: removed again by stop()
        self.proc: subprocess.Popen | None = None

    @property
    def user(self) -> str:
        return unquote(self.upstream.username or "postgres")

    def url(self, dbname: str | None = None, host: str | None = None) -> str:
        """The DATABASE_URL an app uses to go through this pgbouncer."""
        name = dbname or self.upstream.path.lstrip("/") or "postgres"
        credentials = self.upstream.netloc.rpartition("@")[0]
        return f"postgresql://{credentials}@{host or self.listen}:{self.port}/{name}"

    def render(self) -> Path:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        password = unquote(self.upstream.password or "")
        (self.state_dir / "users.txt").write_text(f'"{self.user}" "{password}"\n')
        lines = [
            "[databases]",
            # Every database name maps to the same name on the one upstream server.
            f"* = host={self.upstream.hostname} port={self.upstream.port or 5432}",
            "[pgbouncer]",
            f"listen_addr = {self.listen}",
            f"listen_port = {self.port}",
            "unix_socket_dir =",
            # Loopback-only local use; production uses scram-sha-256 with auth_query (docs/scale-out.md).
            "auth_type = trust",
            f"auth_file = {self.state_dir / 'users.txt'}",
            "pool_mode = transaction",
            f"default_pool_size = {self.pool_size}",
            "reserve_pool_size = 5",
            f"max_client_conn = {self.max_client_conn}",
            "server_reset_query =",
            "server_login_retry = 1",
            f"admin_users = {self.user}",
            "query_wait_timeout = 30",
            "log_connections = 0",
            "log_disconnections = 0",
            f"logfile = {self.state_dir / 'pgbouncer.log'}",
            f"pidfile = {self.state_dir / 'pgbouncer.pid'}",
            *self._tls_lines(),
        ]
        path = self.state_dir / "pgbouncer.ini"
        path.write_text("\n".join(lines) + "\n")
        self._hand_to_postgres()
        return path

    def _tls_lines(self) -> list[str]:
        keys = {
            "client_cert": "client_tls_cert_file",
            "client_key": "client_tls_key_file",
            "client_ca": "client_tls_ca_file",
            "client_sslmode": "client_tls_sslmode",
            "server_ca": "server_tls_ca_file",
            "server_sslmode": "server_tls_sslmode",
        }
        return [f"{keys[name]} = {value}" for name, value in self.tls.items() if value]

    def _hand_to_postgres(self) -> None:
        if os.getuid() != 0:
            return
        owner = pwd.getpwnam("postgres")
        for path in [self.state_dir, *self.state_dir.iterdir()]:
            os.chown(path, owner.pw_uid, owner.pw_gid)
        if not _postgres_can_enter(self.state_dir):
            # e.g. under pytest's 0700 tmp dirs: move to a fresh directory postgres owns.
            self.state_dir = Path(tempfile.mkdtemp(prefix="quizapp-pgbouncer-"))
            self.own_dir = True
            self.render()

    def command(self) -> list[str]:
        run_as = ["-u", "postgres"] if os.getuid() == 0 else []
        return [PGBOUNCER, *run_as, str(self.state_dir / "pgbouncer.ini")]

    def start(self, timeout: float = 15.0) -> PgBouncer:
        self.render()
        self.proc = subprocess.Popen(
            self.command(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            wait_port(self.port, timeout=timeout, proc=self.proc, host=self.listen)
        except RuntimeError as exc:
            raise RuntimeError(f"pgbouncer: {exc}: {self.log_tail()}") from None
        return self

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        stop_process(self.proc, timeout=10)
        if self.own_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def log_tail(self, lines: int = 5) -> str:
        path = self.state_dir / "pgbouncer.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def _postgres_can_enter(path: Path) -> bool:
    probe = ["runuser", "-u", "postgres", "--", "test", "-w", str(path)]
    return subprocess.run(probe, capture_output=True, check=False).returncode == 0
