"""Scale-out settings: Sentinel, Redis and Postgres TLS are validated and reach the clients built from them."""

from __future__ import annotations

import pytest
from redis.sentinel import SentinelConnectionPool

from quizapp import db, redis_conn
from quizapp.config import Config, ConfigError

BASE = {"DATABASE_URL": "postgresql://u@127.0.0.1:5432/db", "REDIS_URL": "redis://:pw@127.0.0.1:6379/3"}


def config(tmp_path, **env) -> dict:
    return Config.from_env({**BASE, "QUIZAPP_VAR_DIR": str(tmp_path), **env}).as_flask()


@pytest.mark.parametrize(
    "name, value",
    [
        ("REDIS_SENTINELS", "127.0.0.1"),
        ("REDIS_SENTINELS", "a:1,b:notaport"),
        ("REDIS_TLS_CA", "/nonexistent/ca.pem"),
        ("DATABASE_SSLMODE", "verify-everything"),
        ("DATABASE_SSLMODE", "verify-full"),  # without DATABASE_SSLROOTCERT
        ("REDIS_WAIT_REPLICAS", "-1"),
    ],
)
def test_invalid_scaleout_value_names_the_variable(tmp_path, name, value):
    with pytest.raises(ConfigError, match=name):
        config(tmp_path, **{name: value})


def test_redis_tls_files_need_a_rediss_url(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    with pytest.raises(ConfigError, match="rediss://"):
        config(tmp_path, REDIS_TLS_CA=str(ca))


def test_sentinel_client_and_limiter_storage_use_the_service_db_and_password(tmp_path):
    cfg = config(tmp_path, REDIS_SENTINELS="10.0.0.1:26379, 10.0.0.2:26379", REDIS_SENTINEL_SERVICE="main")
    client = redis_conn.create_client(cfg)
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool) and pool.service_name == "main"
    assert pool.connection_kwargs["db"] == 3 and pool.connection_kwargs["password"] == "pw"
    uri, options = redis_conn.limiter_storage(cfg)
    assert uri == "redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/main"
    assert options["db"] == 3 and options["use_replicas"] is False
    assert "password" not in options["sentinel_kwargs"]


def test_sentinels_get_their_own_password(tmp_path):
    cfg = config(tmp_path, REDIS_SENTINELS="10.0.0.1:26379", REDIS_SENTINEL_PASSWORD="sentinel-secret")
    client = redis_conn.create_client(cfg)
    sentinel = client.connection_pool.sentinel_manager.sentinels[0]
    assert sentinel.connection_pool.connection_kwargs["password"] == "sentinel-secret"
    assert client.connection_pool.connection_kwargs["password"] == "pw"  # the data nodes' own
    assert redis_conn.limiter_storage(cfg)[1]["sentinel_kwargs"]["password"] == "sentinel-secret"


def test_rediss_options_carry_ca_certificate_and_key(tmp_path):
    files = {}
    for name in ("ca", "cert", "key"):
        files[name] = tmp_path / f"{name}.pem"
        files[name].write_text("x")
    cfg = config(
        tmp_path,
        REDIS_URL="rediss://127.0.0.1:6380/0",
        REDIS_TLS_CA=str(files["ca"]),
        REDIS_TLS_CERT=str(files["cert"]),
        REDIS_TLS_KEY=str(files["key"]),
        REDIS_SENTINELS="127.0.0.1:26379",
    )
    options = redis_conn.limiter_storage(cfg)[1]
    assert options["ssl"] is True and options["ssl_ca_certs"] == str(files["ca"])
    assert options["sentinel_kwargs"]["ssl_certfile"] == str(files["cert"])  # Sentinels speak TLS too


def test_database_tls_settings_reach_libpq(tmp_path):
    root = tmp_path / "root.pem"
    root.write_text("x")
    cfg = config(tmp_path, DATABASE_SSLMODE="verify-full", DATABASE_SSLROOTCERT=str(root))
    pool = db.create_pool(cfg)
    assert pool.connect_kwargs == {"sslmode": "verify-full", "sslrootcert": str(root)}
