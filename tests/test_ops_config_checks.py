"""Start-up validation an operator meets first: placeholders, hosts and ports, sockets, the causes."""

import os
import subprocess
from urllib.parse import urlparse

import pytest

from devstack.processes import ROOT, VENV_BIN, free_port
from quizapp.config import Config, ConfigError

BASE = {"DATABASE_URL": "postgresql://u@127.0.0.1:5432/db", "REDIS_URL": "redis://127.0.0.1:6379/0"}


@pytest.mark.parametrize(
    "secret", ["change-me-to-64-random-hex-characters", "CHANGEME-CHANGEME-CHANGEME", "x" * 40]
)
def test_placeholder_or_repetitive_secret_is_refused_in_production(tmp_path, secret):
    env = {**BASE, "QUIZAPP_ENV": "production", "QUIZAPP_VAR_DIR": str(tmp_path), "SECRET_KEY": secret}
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        Config.from_env(env)


def test_placeholder_secret_is_refused_in_development_too(tmp_path):
    with pytest.raises(ConfigError, match="placeholder"):
        Config.from_env({**BASE, "QUIZAPP_VAR_DIR": str(tmp_path), "SECRET_KEY": "change-me-please-now"})


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("DATABASE_URL", "postgresql://u@127.0.0.1:99999/db", "invalid port"),
        ("DATABASE_URL", "postgresql://u@127.0.0.1:54x2/db", "invalid port"),
        ("DATABASE_URL", "postgresql://u@bad host:5432/db", "invalid host"),
        ("DATABASE_URL", "postgresql:///db", "names no host"),
        ("REDIS_URL", "redis://127.0.0.1:0/0", "invalid port"),
        ("REDIS_URL", "redis://:6379/0", "invalid host"),
        ("OPENAI_BASE_URL", "http://127.0.0.1:70000/v1", "invalid port"),
        ("PUBLIC_BASE_URL", "https://quiz example.org", "invalid host"),
        ("STRIPE_API_BASE", "http://127.0.0.1:port", "invalid port"),
    ],
)
def test_every_url_has_a_valid_host_and_port(tmp_path, name, value, message):
    with pytest.raises(ConfigError, match=f"{name} .*{message}"):
        Config.from_env({**BASE, "QUIZAPP_VAR_DIR": str(tmp_path), name: value})


@pytest.mark.parametrize(
    "url",
    [
        "postgresql:///quizapp?host=/var/run/postgresql",
        "postgresql://quizapp@%2Fvar%2Frun%2Fpostgresql/quizapp",
        "postgresql://quizapp:pw@db1:5432,db2:5433/quizapp",
        "postgresql://quizapp@[::1]:5432/quizapp",
    ],
)
def test_unix_socket_and_multi_host_postgres_urls_are_accepted(tmp_path, url):
    assert (
        Config.from_env({**BASE, "QUIZAPP_VAR_DIR": str(tmp_path), "DATABASE_URL": url}).DATABASE_URL == url
    )


def test_the_app_connects_through_the_local_unix_socket(make_app):
    socket_dir = os.environ.get("QUIZAPP_PG_SOCKET_DIR")
    if not socket_dir:
        pytest.skip("needs the local cluster started by make (QUIZAPP_PG_SOCKET_DIR)")
    parsed = urlparse(os.environ["DATABASE_URL"])
    url = f"postgresql://postgres@/{parsed.path.lstrip('/')}?host={socket_dir}&port={parsed.port}"
    response = make_app(DATABASE_URL=url).test_client().get("/readyz")
    assert response.status_code == 200, response.get_json()


def test_readyz_names_the_cause_without_the_password(make_app):
    port = free_port()
    app = make_app(DATABASE_URL=f"postgresql://quizapp:s3cr3t-pw@127.0.0.1:{port}/x", DB_POOL_MIN=0)
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    cause = response.get_json()["checks"]["postgres"]
    assert str(port) in cause and "refused" in cause.lower(), cause
    assert "s3cr3t" not in response.get_data(as_text=True)


def test_a_config_error_is_one_clear_message_from_gunicorn(tmp_path):
    env = {**os.environ, **BASE, "DATABASE_URL": "postgresql://u@127.0.0.1:99999/db"}
    env.update(GUNICORN_BIND=f"127.0.0.1:{free_port()}", GUNICORN_WORKERS="1", QUIZAPP_VAR_DIR=str(tmp_path))
    proc = subprocess.run(  # noqa: S603 - our own gunicorn
        [str(VENV_BIN / "gunicorn"), "-c", str(ROOT / "gunicorn.conf.py"), "wsgi:app"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "DATABASE_URL has an invalid port" in proc.stderr
    assert "has no attribute 'wsgi'" not in proc.stderr
