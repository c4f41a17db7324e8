"""Redis clients for the app and the limiter: one URL, TLS (rediss://), or the primary Sentinel reports."""

from __future__ import annotations

import logging
import time
from urllib.parse import unquote, urlparse

import redis
from flask import Flask, current_app
from redis.sentinel import Sentinel

log = logging.getLogger(__name__)

EXTENSION = "redis"  # the key of the shared client in app.extensions; read it through redis_client()


def redis_client(app: Flask | None = None) -> redis.Redis:
    """The app's shared Redis client (create_app stores it; default: the current app's)."""
    return (app if app is not None else current_app).extensions[EXTENSION]


class NotReplicated(redis.exceptions.RedisError):
    """A write the caller needs to survive a failover did not reach enough replicas in time."""


def tls_options(config, for_url: bool = False) -> dict:
    """redis-py TLS keywords for a rediss:// REDIS_URL: CA, client certificate and key.

    `for_url`: the client is built from the rediss:// URL itself, which already picks TLS.
    """
    if urlparse(config["REDIS_URL"]).scheme != "rediss":
        return {}
    options = {"ssl_cert_reqs": "required", "ssl_check_hostname": True}
    if not for_url:
        options["ssl"] = True
    if config.get("REDIS_TLS_CA"):
        options["ssl_ca_certs"] = config["REDIS_TLS_CA"]
    if config.get("REDIS_TLS_CERT"):
        options["ssl_certfile"] = config["REDIS_TLS_CERT"]
        options["ssl_keyfile"] = config["REDIS_TLS_KEY"]
    return options


def sentinel_addresses(config) -> list[tuple[str, int]]:
    raw = config.get("REDIS_SENTINELS") or ""
    addresses = []
    for item in filter(None, (part.strip() for part in raw.split(","))):
        host, _, port = item.rpartition(":")
        addresses.append((host.strip("[]"), int(port)))
    return addresses


def _url_credentials(config) -> dict:
    """Database number and credentials from REDIS_URL (its host is unused behind Sentinel)."""
    parsed = urlparse(config["REDIS_URL"])
    found = {"db": int(parsed.path.lstrip("/") or 0)}
    if parsed.username:
        found["username"] = unquote(parsed.username)
    if parsed.password:
        found["password"] = unquote(parsed.password)
    return found


def _sentinel_options(config, timeouts: dict) -> dict:
    """How to reach the Sentinels themselves: timeouts, TLS, and their own password if any."""
    options = {**timeouts, **tls_options(config)}
    if config.get("REDIS_SENTINEL_PASSWORD"):
        options["password"] = config["REDIS_SENTINEL_PASSWORD"]
    return options


def create_client(config) -> redis.Redis:
    """The client every part of the app shares: with REDIS_SENTINELS, always the current primary."""
    timeouts = {
        "socket_timeout": config["REDIS_SOCKET_TIMEOUT"],
        "socket_connect_timeout": config["REDIS_SOCKET_TIMEOUT"],
    }
    pool_options = {"health_check_interval": 30, "max_connections": config["REDIS_MAX_CONNECTIONS"]}
    addresses = sentinel_addresses(config)
    if not addresses:
        tls = tls_options(config, for_url=True)
        return redis.Redis.from_url(config["REDIS_URL"], **timeouts, **pool_options, **tls)
    sentinel = Sentinel(
        addresses,
        sentinel_kwargs=_sentinel_options(config, timeouts),
        **timeouts,
        **tls_options(config),
        **_url_credentials(config),
    )
    # A connection asks the Sentinels for the primary whenever it (re)connects, so after a
    # failover the first error drops the old socket and the next command reaches the new primary.
    return sentinel.master_for(config["REDIS_SENTINEL_SERVICE"], **pool_options)


def limiter_storage(config) -> tuple[str, dict]:
    """Flask-Limiter's storage URI and options for the same Redis (redis+sentinel:// behind Sentinel)."""
    timeouts = {
        "socket_timeout": config["REDIS_SOCKET_TIMEOUT"],
        "socket_connect_timeout": config["REDIS_SOCKET_TIMEOUT"],
    }
    addresses = sentinel_addresses(config)
    if not addresses:
        return _limits_uri(config["REDIS_URL"]), {**timeouts, **tls_options(config, for_url=True)}
    hosts = ",".join(f"{host}:{port}" for host, port in addresses)
    uri = f"redis+sentinel://{hosts}/{config['REDIS_SENTINEL_SERVICE']}"
    options = {
        **timeouts,
        **tls_options(config),
        **_url_credentials(config),
        # Counters are read and written on the primary: a lagging replica would under-count.
        "use_replicas": False,
        "sentinel_kwargs": _sentinel_options(config, timeouts),
    }
    return uri, options


def _limits_uri(url: str) -> str:
    """The limits library names a Unix-socket Redis redis+unix:// (redis-py: unix://)."""
    return "redis+" + url if url.startswith("unix://") else url


def replicas_wanted(config) -> tuple[int, int]:
    """(REDIS_WAIT_REPLICAS, REDIS_WAIT_TIMEOUT_MS): how many replicas a durable write waits for."""
    return config.get("REDIS_WAIT_REPLICAS", 0), config.get("REDIS_WAIT_TIMEOUT_MS", 200)


def wait_in_pipeline(pipe, *, replicas: int, timeout_ms: int) -> None:
    """Queue WAIT after the writes in `pipe`: WAIT counts the writes of its own connection only."""
    if replicas:
        pipe.wait(replicas, timeout_ms)


def check_replicated(acked: int, *, replicas: int) -> bool:
    if acked >= replicas:
        return True
    log.warning("redis.write_not_replicated", extra={"acked": acked, "wanted": replicas})
    return False


def set_replicated(client, name: str, value: bytes, *, ex: int, replicas: int, timeout_ms: int) -> bool:
    """SET with expiry, then (on the same connection) WAIT for `replicas`; True when they have it."""
    if not replicas:
        client.set(name, value, ex=ex)
        return True
    pipe = client.pipeline(transaction=False)
    pipe.set(name, value, ex=ex)
    wait_in_pipeline(pipe, replicas=replicas, timeout_ms=timeout_ms)
    _, acked = pipe.execute()
    return check_replicated(int(acked), replicas=replicas)


class SessionWrites:
    """Session writes, per process: SET, then WAIT for REDIS_WAIT_REPLICAS (when set) on the same
    connection, except for REDIS_WAIT_SKIP_SECONDS after a WAIT came back short.

    A WAIT that no replica answers buys nothing: the write stays on the primary alone either way.
    Waiting it out on every write made each one take REDIS_WAIT_TIMEOUT_MS, and cut the pages' rate
    about 8x while a replica was gone. So after a short WAIT the writes skip it for a while, then
    the next one waits again (one timeout per interval per worker while the replica stays away).
    The AI budget does not use this: its guarantee rests on every WAIT (quizapp/ai/budget.py).
    """

    def __init__(self, client, *, replicas: int, timeout_ms: int, skip_seconds: float, clock=time.monotonic):
        self.client = client
        self.replicas = replicas
        self.timeout_ms = timeout_ms
        self.skip_seconds = skip_seconds
        self._clock = clock
        self._short = False  # the last WAIT came back short: skip, and send one probe per interval
        self._skip_until = 0.0  # monotonic: while short, session writes do not WAIT before this

    @property
    def skipping(self) -> bool:
        return self._short and self._clock() < self._skip_until

    def set(self, name: str, value: bytes, *, ex: int) -> bool:
        """True when the write reached the replicas wanted (or none are wanted: set_replicated)."""
        if self.skipping:
            self.client.set(name, value, ex=ex)
            return False
        if self._short:  # this write probes; the others keep skipping while it waits
            self._skip_until = self._clock() + self.skip_seconds
        acked = set_replicated(
            self.client, name, value, ex=ex, replicas=self.replicas, timeout_ms=self.timeout_ms
        )
        if acked:
            self._short = False
        elif self.skip_seconds and not self._short:
            self._short = True
            self._skip_until = self._clock() + self.skip_seconds
            log.warning("redis.wait_skipped", extra={"seconds": self.skip_seconds, "wanted": self.replicas})
        return acked
