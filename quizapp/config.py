"""Configuration built from environment variables, validated once at start-up."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlparse

from limits import parse_many

ROOT = Path(__file__).resolve().parent.parent
ENVIRONMENTS = ("development", "test", "production")


class ConfigError(RuntimeError):
    """A configuration variable is missing or invalid; the message names it."""


def _int(env, name, default, minimum=None, maximum=None):
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be <= {maximum}, got {value}")
    return value


def _float(env, name, default, minimum=0.0):
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def _bool(env, name, default):
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


# Words that mark a value copied from an example instead of generated (systemd/quizapp.env.example).
PLACEHOLDER_MARKERS = ("change-me", "changeme", "replace-me", "placeholder", "your-secret")
_HOST_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_")


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


def _url(env, name, schemes, default=None, required=True):
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
    hosts = parsed.netloc.rpartition("@")[2]
    if not hosts:
        raise ConfigError(f"{name} names no host (for a Postgres Unix socket use ?host=/run/postgresql)")
    multi = parsed.scheme in ("postgresql", "postgres")  # libpq accepts host1:5432,host2:5432
    for item in hosts.split(",") if multi else [hosts]:
        _check_host_port(name, *_split_host_port(item))
    return raw


def _secret_key(env, mode: str, var_dir: Path) -> str:
    """SECRET_KEY: generated outside production; never a copied placeholder; random in production."""
    secret = env.get("SECRET_KEY", "")
    if not secret:
        if mode == "production":
            raise ConfigError("SECRET_KEY is required when QUIZAPP_ENV=production")
        return _development_secret_key(var_dir)
    if any(marker in secret.lower() for marker in PLACEHOLDER_MARKERS):
        raise ConfigError(
            "SECRET_KEY is the example's placeholder: generate one with "
            "python3 -c 'import secrets; print(secrets.token_hex(32))'"
        )
    if len(secret) < 16:
        raise ConfigError("SECRET_KEY must be at least 16 characters")
    if mode == "production" and (len(secret) < 32 or len(set(secret)) < 10):
        raise ConfigError("SECRET_KEY must be random in production: at least 32 characters, not repetitive")
    return secret


def _limit(env, name, default):
    """A rate limit string such as "60/minute;1000/hour", checked by the limits parser."""
    raw = env.get(name) or default
    try:
        parse_many(raw)
    except ValueError:
        raise ConfigError(f"{name} must be rate limits like '60/minute;1000/hour', got {raw!r}") from None
    return raw


def _smtp_url(env) -> str:
    """SMTP_URL checked at start-up: scheme, host and port are parsed the way the mailer will."""
    raw = env.get("SMTP_URL", "")
    if raw:
        from .mail.smtp import parse_smtp_url  # the mailer's own parser: one definition

        parse_smtp_url(raw)
    return raw


def _choice(env, name, choices, default):
    value = env.get(name) or default
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _development_secret_key(var_dir: Path) -> str:
    """Generate a key once and keep it under var/ so every worker and instance shares it."""
    var_dir.mkdir(parents=True, exist_ok=True)
    path = var_dir / "secret_key"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(32))
    return path.read_text().strip()


@dataclass(frozen=True)
class Config:
    """Every setting of the app; build with Config.from_env()."""

    ENV: str = "development"
    SECRET_KEY: str = ""
    DATABASE_URL: str = ""
    REDIS_URL: str = ""
    VAR_DIR: str = str(ROOT / "var")

    # Postgres pool (quizapp/db.py)
    DB_POOL_MIN: int = 2
    DB_POOL_MAX: int = 20
    DB_POOL_TIMEOUT: float = 15.0
    DB_CONNECT_TIMEOUT: int = 5
    DB_STATEMENT_TIMEOUT_MS: int = 30000
    DB_LOCK_TIMEOUT_MS: int = 5000
    DB_IDLE_TX_TIMEOUT_MS: int = 60000
    DB_TX_RETRIES: int = 3

    # Redis
    REDIS_SOCKET_TIMEOUT: float = 2.0
    REDIS_MAX_CONNECTIONS: int = 200
    READY_TIMEOUT: float = 1.0

    # Sessions
    SESSION_LIFETIME_HOURS: int = 24
    SESSION_COOKIE_SECURE: bool = False
    SESSION_REFRESH_SECONDS: int = 300

    # Edge protection (issue: security)
    RATELIMIT_ENABLED: bool = True
    RATELIMIT_DEFAULT: str = "60/minute"  # per person (session) and page
    RATELIMIT_PERSON_TOTAL: str = "1000/hour"  # per person, all pages together
    RATELIMIT_ADDRESS_PAGES: str = "3000/minute"  # per address (IPv6: per /64), sized for a crowd
    RATELIMIT_VISITOR_PAGES: str = "60/minute;600/hour"  # per address, pages without a session
    RATELIMIT_NEW_SESSIONS: str = "60/minute;600/hour"  # per address, session-less POSTs
    RATELIMIT_IPV6_PREFIX: int = 64
    RATELIMIT_SUBMIT: str = "20/minute"
    RATELIMIT_EMAIL: str = "5/minute"
    RATELIMIT_LOGIN: str = "5/minute"
    RATELIMIT_LOGIN_GLOBAL: str = "60/minute"
    RATELIMIT_POLL: str = "120/minute"
    RATELIMIT_STRATEGY: str = "sliding-window-counter"
    RATELIMIT_HEADERS_ON_SUCCESS: bool = False
    TRUSTED_PROXY_HOPS: int = 0
    MAX_CONTENT_LENGTH: int = 10 * 1024 * 1024
    CSRF_ENABLED: bool = True
    REQUEST_LOG_ALL: bool = False
    ADMIN_PASSWORD_HASH: str = ""
    ADMIN_IDLE_MINUTES: int = 30
    ADMIN_HASH_CONCURRENCY: int = 0  # password checks at once per worker; 0 = the CPU count

    # Quiz
    QUIZ_DAILY_QUOTA: int = 20  # results per person (session) and day
    QUIZ_ADDRESS_DAILY_QUOTA: int = 1000  # results per address (IPv6: per /64) and day
    QUIZ_CONTENT_PATH: str = str(ROOT / "quizapp" / "quiz" / "content.yaml")
    PUBLIC_BASE_URL: str = ""

    # Payments
    PAYMENT_PROVIDER: str = "test"  # production must set stripe
    STRIPE_SECRET_KEY: str = ""
    STRIPE_WEBHOOK_SECRET: str = ""
    STRIPE_PRICE_CENTS: int = 900
    STRIPE_API_BASE: str = ""
    CHECKOUT_EXPIRES_MINUTES: int = 60
    REPORT_LINK_DAYS: int = 30

    # Mail (quizapp/mail: the mailer process drains email_outbox)
    SMTP_URL: str = ""
    SMTP_CA_FILE: str = ""
    SMTP_TIMEOUT: float = 15.0
    MAIL_FROM: str = "Business Model Fit <no-reply@localhost>"
    MAIL_MAX_ATTEMPTS: int = 8
    MAIL_RETRY_BASE_SECONDS: float = 30.0
    MAIL_RETRY_MAX_SECONDS: float = 3600.0
    MAIL_POLL_SECONDS: float = 2.0
    MAIL_CONFIRM_DAYS: int = 7

    # The operator, shown on the privacy, terms, refund and contact pages
    OPERATOR_NAME: str = ""
    OPERATOR_EMAIL: str = ""
    OPERATOR_ADDRESS: str = ""

    # AI analysis
    OPENAI_API_KEY: str = ""
    OPENAI_BASE_URL: str = ""
    OPENAI_MODEL: str = "gpt-4o-mini"
    OPENAI_TIMEOUT: float = 20.0
    AI_RPM: int = 10
    AI_WINDOW_SECONDS: float = 60.0
    AI_MAX_IN_FLIGHT: int = 8
    AI_PER_USER: int = 2
    AI_QUEUE_MAX: int = 500
    AI_DEADLINE_SECONDS: float = 60.0
    AI_DISPATCHERS: int = 4
    AI_LEASE_SECONDS: float = 45.0
    AI_RETRIES: int = 3
    AI_BREAKER_FAILURES: int = 5
    AI_BREAKER_COOLDOWN: float = 30.0
    AI_CACHE_SECONDS: int = 3600
    AI_FALLBACK_CACHE_SECONDS: int = 30

    # Admission control and the waiting room (quizapp/admission)
    ADMISSION_ENABLED: bool = True
    ADMISSION_MAX_IN_FLIGHT: int = 32
    ADMISSION_QUEUE_TIMEOUT_MS: int = 2000
    ADMISSION_CAPACITY: int = 2000
    ADMISSION_VISIT_SECONDS: int = 120
    ADMISSION_PASS_SECONDS: int = 1800
    ADMISSION_REFRESH_MIN_SECONDS: int = 5

    # Operations
    RETENTION_DAYS: int = 30
    RETENTION_AUDIT_DAYS: int = 365
    HEARTBEAT_SECONDS: float = 2.0
    INSTANCE_NAME: str = field(default_factory=lambda: os.uname().nodename)

    # Scale-out (issue 15): Postgres TLS, Redis Sentinel and TLS; read by _scaleout_settings.
    DATABASE_SSLMODE: str = ""
    DATABASE_SSLROOTCERT: str = ""
    DATABASE_SSLCERT: str = ""
    DATABASE_SSLKEY: str = ""
    REDIS_SENTINELS: str = ""
    REDIS_SENTINEL_SERVICE: str = "quizapp"
    REDIS_SENTINEL_PASSWORD: str = ""
    REDIS_TLS_CA: str = ""
    REDIS_TLS_CERT: str = ""
    REDIS_TLS_KEY: str = ""
    REDIS_WAIT_REPLICAS: int = 0
    REDIS_WAIT_TIMEOUT_MS: int = 200

    @property
    def is_production(self) -> bool:
        return self.ENV == "production"

    @classmethod
    def from_env(cls, environ=None, **overrides) -> Config:
        """Read and validate every variable; raise ConfigError naming the first bad one."""
        env = dict(os.environ if environ is None else environ)
        env.update({k: str(v) for k, v in overrides.items()})
        mode = _choice(env, "QUIZAPP_ENV", ENVIRONMENTS, "development")
        var_dir = Path(env.get("QUIZAPP_VAR_DIR") or ROOT / "var")
        secret = _secret_key(env, mode, var_dir)

        values = dict(
            ENV=mode,
            SECRET_KEY=secret,
            VAR_DIR=str(var_dir),
            DATABASE_URL=_url(env, "DATABASE_URL", ("postgresql", "postgres")),
            REDIS_URL=_url(env, "REDIS_URL", ("redis", "rediss")),
            PUBLIC_BASE_URL=_url(env, "PUBLIC_BASE_URL", ("https", "http"), required=False),
            STRIPE_API_BASE=_url(env, "STRIPE_API_BASE", ("https", "http"), required=False),
            DB_POOL_MIN=_int(env, "DB_POOL_MIN", 2, minimum=0),
            DB_POOL_MAX=_int(env, "DB_POOL_MAX", 20, minimum=1, maximum=500),
            DB_POOL_TIMEOUT=_float(env, "DB_POOL_TIMEOUT", 15.0),
            DB_CONNECT_TIMEOUT=_int(env, "DB_CONNECT_TIMEOUT", 5, minimum=1),
            DB_STATEMENT_TIMEOUT_MS=_int(env, "DB_STATEMENT_TIMEOUT_MS", 30000, minimum=1),
            DB_LOCK_TIMEOUT_MS=_int(env, "DB_LOCK_TIMEOUT_MS", 5000, minimum=1),
            DB_IDLE_TX_TIMEOUT_MS=_int(env, "DB_IDLE_TX_TIMEOUT_MS", 60000, minimum=1),
            DB_TX_RETRIES=_int(env, "DB_TX_RETRIES", 3, minimum=1, maximum=10),
            REDIS_SOCKET_TIMEOUT=_float(env, "REDIS_SOCKET_TIMEOUT", 2.0),
            REDIS_MAX_CONNECTIONS=_int(env, "REDIS_MAX_CONNECTIONS", 200, minimum=2),
            READY_TIMEOUT=_float(env, "READY_TIMEOUT", 1.0),
            SESSION_LIFETIME_HOURS=_int(env, "SESSION_LIFETIME_HOURS", 24, minimum=1),
            SESSION_REFRESH_SECONDS=_int(env, "SESSION_REFRESH_SECONDS", 300, minimum=0),
            SESSION_COOKIE_SECURE=_bool(env, "SESSION_COOKIE_SECURE", mode == "production"),
            RATELIMIT_ENABLED=_bool(env, "RATELIMIT_ENABLED", True),
            RATELIMIT_DEFAULT=_limit(env, "RATELIMIT_DEFAULT", cls.RATELIMIT_DEFAULT),
            RATELIMIT_PERSON_TOTAL=_limit(env, "RATELIMIT_PERSON_TOTAL", cls.RATELIMIT_PERSON_TOTAL),
            RATELIMIT_ADDRESS_PAGES=_limit(env, "RATELIMIT_ADDRESS_PAGES", cls.RATELIMIT_ADDRESS_PAGES),
            RATELIMIT_VISITOR_PAGES=_limit(env, "RATELIMIT_VISITOR_PAGES", cls.RATELIMIT_VISITOR_PAGES),
            RATELIMIT_NEW_SESSIONS=_limit(env, "RATELIMIT_NEW_SESSIONS", cls.RATELIMIT_NEW_SESSIONS),
            RATELIMIT_IPV6_PREFIX=_int(env, "RATELIMIT_IPV6_PREFIX", 64, minimum=16, maximum=128),
            RATELIMIT_SUBMIT=_limit(env, "RATELIMIT_SUBMIT", cls.RATELIMIT_SUBMIT),
            RATELIMIT_EMAIL=_limit(env, "RATELIMIT_EMAIL", cls.RATELIMIT_EMAIL),
            RATELIMIT_LOGIN=_limit(env, "RATELIMIT_LOGIN", cls.RATELIMIT_LOGIN),
            RATELIMIT_LOGIN_GLOBAL=_limit(env, "RATELIMIT_LOGIN_GLOBAL", cls.RATELIMIT_LOGIN_GLOBAL),
            RATELIMIT_POLL=_limit(env, "RATELIMIT_POLL", cls.RATELIMIT_POLL),
            RATELIMIT_STRATEGY=_choice(
                env,
                "RATELIMIT_STRATEGY",
                ("sliding-window-counter", "fixed-window"),
                "sliding-window-counter",
            ),
            RATELIMIT_HEADERS_ON_SUCCESS=_bool(env, "RATELIMIT_HEADERS_ON_SUCCESS", False),
            TRUSTED_PROXY_HOPS=_int(env, "TRUSTED_PROXY_HOPS", 0, minimum=0, maximum=5),
            MAX_CONTENT_LENGTH=_int(env, "MAX_CONTENT_LENGTH", 10 * 1024 * 1024, minimum=1024),
            CSRF_ENABLED=_bool(env, "CSRF_ENABLED", True),
            REQUEST_LOG_ALL=_bool(env, "REQUEST_LOG_ALL", False),
            ADMIN_PASSWORD_HASH=env.get("ADMIN_PASSWORD_HASH", ""),
            ADMIN_IDLE_MINUTES=_int(env, "ADMIN_IDLE_MINUTES", 30, minimum=1),
            ADMIN_HASH_CONCURRENCY=_int(env, "ADMIN_HASH_CONCURRENCY", 0, minimum=0, maximum=64),
            QUIZ_DAILY_QUOTA=_int(env, "QUIZ_DAILY_QUOTA", 20, minimum=1),
            QUIZ_ADDRESS_DAILY_QUOTA=_int(env, "QUIZ_ADDRESS_DAILY_QUOTA", 1000, minimum=1),
            QUIZ_CONTENT_PATH=env.get("QUIZ_CONTENT_PATH") or cls.QUIZ_CONTENT_PATH,
            PAYMENT_PROVIDER=_choice(env, "PAYMENT_PROVIDER", ("test", "stripe"), "test"),
            STRIPE_SECRET_KEY=env.get("STRIPE_SECRET_KEY", ""),
            STRIPE_WEBHOOK_SECRET=env.get("STRIPE_WEBHOOK_SECRET", ""),
            STRIPE_PRICE_CENTS=_int(env, "STRIPE_PRICE_CENTS", 900, minimum=50),
            # Stripe accepts checkout expiries from 30 minutes to 24 hours after it receives the call.
            CHECKOUT_EXPIRES_MINUTES=_int(env, "CHECKOUT_EXPIRES_MINUTES", 60, minimum=31, maximum=1439),
            REPORT_LINK_DAYS=_int(env, "REPORT_LINK_DAYS", 30, minimum=1, maximum=3650),
            SMTP_URL=_smtp_url(env),
            SMTP_CA_FILE=env.get("SMTP_CA_FILE", ""),
            SMTP_TIMEOUT=_float(env, "SMTP_TIMEOUT", 15.0, minimum=0.5),
            MAIL_FROM=env.get("MAIL_FROM") or cls.MAIL_FROM,
            MAIL_MAX_ATTEMPTS=_int(env, "MAIL_MAX_ATTEMPTS", 8, minimum=1, maximum=100),
            MAIL_RETRY_BASE_SECONDS=_float(env, "MAIL_RETRY_BASE_SECONDS", 30.0, minimum=0.05),
            MAIL_RETRY_MAX_SECONDS=_float(env, "MAIL_RETRY_MAX_SECONDS", 3600.0, minimum=0.05),
            MAIL_POLL_SECONDS=_float(env, "MAIL_POLL_SECONDS", 2.0, minimum=0.05),
            MAIL_CONFIRM_DAYS=_int(env, "MAIL_CONFIRM_DAYS", 7, minimum=1),
            OPERATOR_NAME=env.get("OPERATOR_NAME", "").strip(),
            OPERATOR_EMAIL=env.get("OPERATOR_EMAIL", "").strip(),
            OPERATOR_ADDRESS=env.get("OPERATOR_ADDRESS", "").strip(),
            OPENAI_API_KEY=env.get("OPENAI_API_KEY", ""),
            OPENAI_BASE_URL=_url(env, "OPENAI_BASE_URL", ("http", "https"), required=False),
            OPENAI_MODEL=env.get("OPENAI_MODEL") or cls.OPENAI_MODEL,
            OPENAI_TIMEOUT=_float(env, "OPENAI_TIMEOUT", 20.0),
            AI_RPM=_int(env, "AI_RPM", 10, minimum=1),
            AI_WINDOW_SECONDS=_float(env, "AI_WINDOW_SECONDS", 60.0, minimum=0.5),
            AI_MAX_IN_FLIGHT=_int(env, "AI_MAX_IN_FLIGHT", 8, minimum=1),
            AI_PER_USER=_int(env, "AI_PER_USER", 2, minimum=1),
            AI_QUEUE_MAX=_int(env, "AI_QUEUE_MAX", 500, minimum=1),
            AI_DEADLINE_SECONDS=_float(env, "AI_DEADLINE_SECONDS", 60.0, minimum=0.5),
            AI_DISPATCHERS=_int(env, "AI_DISPATCHERS", 4, minimum=1, maximum=64),
            AI_LEASE_SECONDS=_float(env, "AI_LEASE_SECONDS", 45.0, minimum=0.5),
            AI_RETRIES=_int(env, "AI_RETRIES", 3, minimum=1, maximum=10),
            AI_BREAKER_FAILURES=_int(env, "AI_BREAKER_FAILURES", 5, minimum=1),
            AI_BREAKER_COOLDOWN=_float(env, "AI_BREAKER_COOLDOWN", 30.0, minimum=0.1),
            AI_CACHE_SECONDS=_int(env, "AI_CACHE_SECONDS", 3600, minimum=1),
            AI_FALLBACK_CACHE_SECONDS=_int(env, "AI_FALLBACK_CACHE_SECONDS", 30, minimum=1),
            ADMISSION_ENABLED=_bool(env, "ADMISSION_ENABLED", True),
            ADMISSION_MAX_IN_FLIGHT=_int(env, "ADMISSION_MAX_IN_FLIGHT", 32, minimum=1, maximum=10000),
            ADMISSION_QUEUE_TIMEOUT_MS=_int(env, "ADMISSION_QUEUE_TIMEOUT_MS", 2000, minimum=0),
            ADMISSION_CAPACITY=_int(env, "ADMISSION_CAPACITY", 2000, minimum=1),
            ADMISSION_VISIT_SECONDS=_int(env, "ADMISSION_VISIT_SECONDS", 120, minimum=1),
            ADMISSION_PASS_SECONDS=_int(env, "ADMISSION_PASS_SECONDS", 1800, minimum=60),
            ADMISSION_REFRESH_MIN_SECONDS=_int(env, "ADMISSION_REFRESH_MIN_SECONDS", 5, minimum=1),
            RETENTION_DAYS=_int(env, "RETENTION_DAYS", 30, minimum=2),
            RETENTION_AUDIT_DAYS=_int(env, "RETENTION_AUDIT_DAYS", 365, minimum=2),
            HEARTBEAT_SECONDS=_float(env, "HEARTBEAT_SECONDS", 2.0, minimum=0.1),
            INSTANCE_NAME=env.get("INSTANCE_NAME") or os.uname().nodename,
        )
        values.update(_scaleout_settings(env))
        if values["DB_POOL_MIN"] > values["DB_POOL_MAX"]:
            raise ConfigError("DB_POOL_MIN must not exceed DB_POOL_MAX")
        if mode == "production" and values["PAYMENT_PROVIDER"] == "test":
            # The offline provider unlocks reports without money: never in production.
            raise ConfigError("PAYMENT_PROVIDER=test is not allowed when QUIZAPP_ENV=production")
        if mode == "production" and values["PAYMENT_PROVIDER"] == "stripe":
            for name in ("STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET"):
                if not values[name]:
                    raise ConfigError(f"{name} is required when PAYMENT_PROVIDER=stripe")
        if mode == "production":
            # The legal pages name who runs the service and how to reach them.
            for name in ("OPERATOR_NAME", "OPERATOR_EMAIL", "PUBLIC_BASE_URL"):
                if not values[name]:
                    raise ConfigError(f"{name} is required when QUIZAPP_ENV=production")
        return cls(**values)

    def as_flask(self) -> dict:
        """The settings under the names Flask and its extensions read."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


# --- Scale-out (issue 15): kept in one block so other config changes merge cleanly. ---
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def _readable_file(env, name) -> str:
    path = env.get(name, "")
    if path and not os.access(path, os.R_OK):
        raise ConfigError(f"{name} names a file that does not exist or cannot be read: {path!r}")
    return path


def _host_ports(env, name) -> str:
    raw = env.get(name, "").strip()
    for item in filter(None, (part.strip() for part in raw.split(","))):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"{name} must be host:port[,host:port...], got {item!r}")
    return raw


def _scaleout_settings(env) -> dict:
    """PgBouncer needs nothing here; Postgres TLS, Sentinel and Redis TLS do."""
    values = dict(
        DATABASE_SSLMODE=_choice(env, "DATABASE_SSLMODE", SSL_MODES, "prefer")
        if env.get("DATABASE_SSLMODE")
        else "",
        DATABASE_SSLROOTCERT=_readable_file(env, "DATABASE_SSLROOTCERT"),
        DATABASE_SSLCERT=_readable_file(env, "DATABASE_SSLCERT"),
        DATABASE_SSLKEY=_readable_file(env, "DATABASE_SSLKEY"),
        REDIS_SENTINELS=_host_ports(env, "REDIS_SENTINELS"),
        REDIS_SENTINEL_SERVICE=env.get("REDIS_SENTINEL_SERVICE") or "quizapp",
        REDIS_SENTINEL_PASSWORD=env.get("REDIS_SENTINEL_PASSWORD", ""),
        REDIS_TLS_CA=_readable_file(env, "REDIS_TLS_CA"),
        REDIS_TLS_CERT=_readable_file(env, "REDIS_TLS_CERT"),
        REDIS_TLS_KEY=_readable_file(env, "REDIS_TLS_KEY"),
        REDIS_WAIT_REPLICAS=_int(env, "REDIS_WAIT_REPLICAS", 0, minimum=0, maximum=5),
        REDIS_WAIT_TIMEOUT_MS=_int(env, "REDIS_WAIT_TIMEOUT_MS", 200, minimum=1, maximum=10000),
    )
    if values["DATABASE_SSLMODE"] == "verify-full" and not values["DATABASE_SSLROOTCERT"]:
        raise ConfigError("DATABASE_SSLROOTCERT is required when DATABASE_SSLMODE=verify-full")
    for cert, key in (("DATABASE_SSLCERT", "DATABASE_SSLKEY"), ("REDIS_TLS_CERT", "REDIS_TLS_KEY")):
        if bool(values[cert]) != bool(values[key]):
            raise ConfigError(f"{cert} and {key} must be set together")
    tls_files = values["REDIS_TLS_CA"] or values["REDIS_TLS_CERT"]
    if tls_files and urlparse(env.get("REDIS_URL", "")).scheme != "rediss":
        raise ConfigError("REDIS_TLS_* are set but REDIS_URL is not a rediss:// URL")
    return values
