"""TLS to Redis (rediss:// with CA, client certificate and key) and to Postgres (sslmode=verify-full)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg2
import pytest
import redis

from devstack.processes import free_port, free_port_block, wait_port
from devstack.quiz_walk import answer_all, csrf_from, submit
from devstack.redis_ha import RedisHA
from quizapp import redis_conn
from quizapp.migrate import migrate
from tests.support.certs import make_certs

pytestmark = pytest.mark.integration
PG_BIN = Path(shutil.which("initdb") or "/usr/lib/postgresql/15/bin/initdb").resolve().parent


@pytest.fixture(scope="module")
def cert_dir():
    # Postgres runs as `postgres` and reads its key from here: a directory that user owns.
    directory = Path(tempfile.mkdtemp(prefix="quizapp-tls-"))
    certs = make_certs(directory)
    if os.getuid() == 0:
        owner = pwd.getpwnam("postgres")
        for path in [directory, *directory.iterdir()]:
            os.chown(path, owner.pw_uid, owner.pw_gid)
        directory.chmod(0o755)
        for path in (certs.ca, certs.client_cert, certs.client_key, certs.other_ca):
            os.chown(path, 0, 0)
    yield certs
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def tls_redis(cert_dir, tmp_path_factory):
    port = free_port()
    workdir = tmp_path_factory.mktemp("tls-redis")
    proc = subprocess.Popen(
        ["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1"]
        + ["--tls-cert-file", str(cert_dir.server_cert), "--tls-key-file", str(cert_dir.server_key)]
        + ["--tls-ca-cert-file", str(cert_dir.ca), "--tls-auth-clients", "yes"]
        + ["--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_port(port, proc=proc)
        yield f"rediss://localhost:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def tls_postgres(cert_dir):
    """A separate Postgres cluster that accepts TLS connections only."""
    data = Path(tempfile.mkdtemp(prefix="quizapp-tls-pg-"))
    port = free_port()
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
    if os.getuid() == 0:
        shutil.chown(data, "postgres")
    data.chmod(0o700)
    subprocess.run([*as_postgres, str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"],
                   check=True, capture_output=True)  # fmt: skip
    with open(data / "postgresql.conf", "a") as conf:
        conf.write(
            f"listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = ''\n"
            f"ssl = on\nssl_cert_file = '{cert_dir.server_cert}'\nssl_key_file = '{cert_dir.server_key}'\n"
            "max_connections = 20\nshared_buffers = 16MB\nfsync = off\n"
        )
    (data / "pg_hba.conf").write_text(
        "hostssl all all 127.0.0.1/32 trust\nhostnossl all all 0.0.0.0/0 reject\n"
    )
    subprocess.run([*as_postgres, str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(data / "log"), "-w", "start"],
                   check=True, capture_output=True)  # fmt: skip
    try:
        yield port
    finally:
        subprocess.run([*as_postgres, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, check=False)  # fmt: skip
        shutil.rmtree(data, ignore_errors=True)


def test_sessions_and_limits_over_rediss_with_a_client_certificate(make_app, tls_redis, cert_dir):
    app = make_app(
        REDIS_URL=tls_redis,
        REDIS_TLS_CA=cert_dir.ca,
        REDIS_TLS_CERT=cert_dir.client_cert,
        REDIS_TLS_KEY=cert_dir.client_key,
        RATELIMIT_ENABLED="true",
        RATELIMIT_VISITOR_PAGES="3/minute",  # the landing page without a session
    )
    client = app.test_client()
    assert [client.get("/").status_code for _ in range(4)] == [200, 200, 200, 429]
    storage = redis_conn.redis_client(app)
    assert storage.connection_pool.connection_kwargs["ssl_ca_certs"] == str(cert_dir.ca)
    assert storage.keys("*")  # the limiter counted in this Redis, not in its memory fallback


def test_rediss_refuses_a_server_signed_by_another_ca(make_app, tls_redis, cert_dir):
    app = make_app(REDIS_URL=tls_redis, REDIS_TLS_CA=cert_dir.other_ca, REDIS_TLS_CERT=cert_dir.client_cert,
                   REDIS_TLS_KEY=cert_dir.client_key)  # fmt: skip
    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        redis_conn.redis_client(app).ping()


def test_quiz_over_postgres_verify_full(make_app, tls_postgres, cert_dir):
    dsn = f"postgresql://postgres@localhost:{tls_postgres}/postgres"
    tls = {"DATABASE_SSLMODE": "verify-full", "DATABASE_SSLROOTCERT": str(cert_dir.ca)}
    migrate(dsn, sslmode="verify-full", sslrootcert=str(cert_dir.ca))
    app = make_app(DATABASE_URL=dsn, **tls)
    client = app.test_client()
    answer_all(client, app.extensions["quiz_content"])
    assert submit(client).status_code == 303
    conn = psycopg2.connect(dsn, sslmode="verify-full", sslrootcert=str(cert_dir.ca))
    with conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM quiz_attempts")
        assert cur.fetchone()[0] == 1
        cur.execute("SELECT count(*) FROM pg_stat_ssl WHERE ssl AND pid <> pg_backend_pid()")
        assert cur.fetchone()[0] >= 1  # the app's own pooled connection is encrypted
    conn.close()


def test_verify_full_refuses_a_host_name_the_certificate_does_not_name(tls_postgres, cert_dir):
    # The server certificate names localhost only: 127.0.0.1 must not pass verify-full.
    with pytest.raises(psycopg2.OperationalError, match="does not match host name"):
        psycopg2.connect(f"postgresql://postgres@127.0.0.1:{tls_postgres}/postgres",
                         sslmode="verify-full", sslrootcert=str(cert_dir.ca))  # fmt: skip


def test_sentinel_primary_and_replica_over_tls(make_app, tmp_path):
    certs = make_certs(tmp_path / "certs", server_names="DNS:localhost,IP:127.0.0.1")
    tls = {"cert": certs.server_cert, "key": certs.server_key, "ca": certs.ca}
    ha = RedisHA(tmp_path / "redis-ha", free_port_block(5), service="tlsha", tls=tls)
    try:
        ha.start()
        app = make_app(
            REDIS_URL=f"rediss://127.0.0.1:{ha.base_port}/0",
            REDIS_SENTINELS=ha.sentinels,
            REDIS_SENTINEL_SERVICE=ha.service,
            REDIS_TLS_CA=certs.ca,
            REDIS_TLS_CERT=certs.client_cert,
            REDIS_TLS_KEY=certs.client_key,
            REDIS_WAIT_REPLICAS=1,
            RATELIMIT_ENABLED="true",
            RATELIMIT_DEFAULT="4/minute",
        )
        client = app.test_client()
        landing = client.get("/")
        assert client.post("/start", data={"csrf_token": csrf_from(landing)}).status_code == 303
        replica = ha.client(ha.base_port + 1)
        assert replica.keys("s:*")  # the session was on the replica (WAIT) before the answer left
        assert [client.get("/").status_code for _ in range(5)] == [200, 200, 200, 200, 429]
    finally:
        ha.stop()
