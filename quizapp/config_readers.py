"""Readers of config values: read(env, name, default, **options) gives a valid value or names the variable.

An unset or empty variable is the default; quizapp/config.py declares which reader each setting uses.
"""

from __future__ import annotations

import os
from urllib.parse import parse_qsl, unquote, urlparse

from limits import parse_many
from werkzeug.security import check_password_hash

_HOST_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_")


class ConfigError(RuntimeError):
    """A configuration variable is missing or invalid; the message names it."""


def integer(env, name, default, minimum=None, maximum=None):
    """The one integer parser of the app (gunicorn.conf.py says why it keeps its own)."""
    return _bounded(env, name, default, kind=int, what="an integer", minimum=minimum, maximum=maximum)


def number(env, name, default, minimum=0.0):
    return _bounded(env, name, default, kind=float, what="a number", minimum=minimum, maximum=None)


def pace(env, name, default):
    """A rate that may also be "auto" (-1.0: derived by the code that reads it) or "off" (0.0)."""
    raw = (env.get(name) or "").strip().lower()
    if raw in ("", "auto", "off"):
        return default if not raw else (-1.0 if raw == "auto" else 0.0)
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):  # 0 is refused: "off" or "auto" say which one is meant
        raise ConfigError(f'{name} must be "auto", "off" or a number above 0, got {raw!r}')
    return value


def _bounded(env, name, default, *, kind, what, minimum, maximum):
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name} must be {what}, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be <= {maximum}, got {value}")
    return value


def flag(env, name, default):
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def text(env, name, default):
    return env.get(name) or default


def stripped(env, name, default):
    return (env.get(name) or default).strip()


def choice(env, name, default, choices):
    value = env.get(name) or default
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(c for c in choices if c)}, got {value!r}")
    return value


def rate_limits(env, name, default):
    """A rate limit string such as "60/minute;1000/hour", checked by the limits parser."""
    raw = env.get(name) or default
    try:
        parse_many(raw)
    except ValueError:
        raise ConfigError(f"{name} must be rate limits like '60/minute;1000/hour', got {raw!r}") from None
    return raw


def _check_host_port(name: str, host: str, port: str | None) -> None:
    """One host[:port] of a URL: a name or IPv4 of legal characters (or [IPv6]), a port 1-65535."""
    if host.startswith("[") and host.endswith("]"):
        ok = len(host) > 2 and all(c in "0123456789abcdefABCDEF:." for c in host[1:-1])
    else:
        ok = bool(host) and set(host) <= _HOST_CHARS and not host.startswith(("-", "."))
    if not ok:
        raise ConfigError(f"{name} has an invalid host {host!r}")
    if port is None:
        return
    if not port.isascii() or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(f"{name} has an invalid port {port!r} (1-65535)")


def _split_host_port(item: str) -> tuple[str, str | None]:
    if item.startswith("["):
        host, _, rest = item.partition("]")
        host += "]"
        return host, (rest[1:] if rest.startswith(":") else None) if rest else None
    host, sep, port = item.rpartition(":")
    return (host, port) if sep else (item, None)


def _socket_dir(parsed) -> str:
    """The Unix-socket directory of a Postgres URL (?host=/dir or a %2F-encoded host), or ''."""
    for key, value in parse_qsl(parsed.query):
        if key == "host" and value.startswith("/"):
            return value
    host = unquote(parsed.netloc.rpartition("@")[2].split(":")[0])
    return host if host.startswith("/") else ""


def url(env, name, default, schemes, required=False):
    """A URL of one of `schemes` whose every host and port is valid; Postgres may name a socket dir."""
    raw = env.get(name) or default
    if not raw:
        if required:
            raise ConfigError(f"{name} is required (e.g. {schemes[0]}://host:port/...)")
        return ""
    parsed = urlparse(raw)
    if parsed.scheme not in schemes:
        raise ConfigError(f"{name} must be a {'/'.join(schemes)} URL, got {parsed.scheme!r} scheme")
    if parsed.scheme in ("postgresql", "postgres") and _socket_dir(parsed):
        return raw  # Unix socket: libpq finds <dir>/.s.PGSQL.<port>
    if parsed.scheme == "unix":  # a Redis Unix socket: unix:///run/redis/redis.sock?db=0
        if not parsed.path.startswith("/"):
            raise ConfigError(f"{name} names no socket path (e.g. unix:///run/redis/redis.sock?db=0)")
        return raw
    hosts = parsed.netloc.rpartition("@")[2]
    if not hosts:
        raise ConfigError(f"{name} names no host (for a Postgres Unix socket use ?host=/run/postgresql)")
    multi = parsed.scheme in ("postgresql", "postgres")  # libpq accepts host1:5432,host2:5432
    for item in hosts.split(",") if multi else [hosts]:
        _check_host_port(name, *_split_host_port(item))
    return raw


def host_ports(env, name, default):
    """host:port[,host:port...] (Sentinels): each port is required and checked like a URL's."""
    raw = (env.get(name) or default).strip()
    for item in filter(None, (part.strip() for part in raw.split(","))):
        host, port = _split_host_port(item)
        if not host or not port:
            raise ConfigError(f"{name} must be host:port[,host:port...], got {item!r}")
        _check_host_port(name, host, port)
    return raw


def readable_file(env, name, default):
    path = env.get(name) or default
    if path and not os.access(path, os.R_OK):
        raise ConfigError(f"{name} names a file that does not exist or cannot be read: {path!r}")
    return path


def smtp_url(env, name, default) -> str:
    """SMTP_URL checked at start-up: scheme, host and port are parsed the way the mailer will."""
    raw = env.get(name) or default
    if raw:
        from .mail.smtp import parse_smtp_url  # the mailer's own parser: one definition

        parse_smtp_url(raw)
    return raw


def password_hash(env, name, default) -> str:
    """Fail fast on a hash werkzeug cannot check instead of a 500 at the first login."""
    pw_hash = env.get(name) or default
    if not pw_hash:
        return pw_hash
    message = (
        f"{name} is not a werkzeug scrypt/pbkdf2 password hash "
        "(make one with `python -m quizapp.admin.hash_password`)"
    )
    parts = pw_hash.split("$", 2)
    if len(parts) != 3 or not parts[0].startswith(("scrypt", "pbkdf2")) or not all(parts):
        raise ConfigError(message)
    try:
        check_password_hash(pw_hash, "")
    except (ValueError, TypeError) as exc:
        raise ConfigError(message) from exc
    return pw_hash
