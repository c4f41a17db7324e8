"""Configuration built from environment variables, validated once at start-up."""

from __future__ import annotations

import os
import secrets
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from urllib.parse import urlparse

from . import config_readers as read
from .config_readers import ConfigError

__all__ = ["ROOT", "Config", "ConfigError"]

ROOT = Path(__file__).resolve().parent.parent
ENVIRONMENTS = ("development", "test", "production")
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
# Words that mark a value copied from an example instead of generated (systemd/quizapp.env.example).
PLACEHOLDER_MARKERS = ("change-me", "changeme", "replace-me", "placeholder", "your-secret")


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


# A field without a reader is read by its type; a DERIVED field is computed by from_env itself.
_BY_TYPE = {"int": read.integer, "float": read.number, "bool": read.flag, "str": read.text}
DERIVED = {"derived": True}


def _setting(default, reader=None, **options):
    """A field read from the variable of its name: `default` is its one default (see the readers)."""
    return field(default=default, metadata={"reader": reader, "options": options})


@dataclass(frozen=True)
class Config:
    """Every setting of the app; build with Config.from_env(). Each default is written here, once.

    One declaration per setting (name, type, default, reader options): the lines share a shape on
    purpose, the way a table's rows do; from_env reads them all with one loop.
    """

    ENV: str = field(default="development", metadata=DERIVED)  # from QUIZAPP_ENV
    SECRET_KEY: str = field(default="", metadata=DERIVED)
    DATABASE_URL: str = _setting("", read.url, schemes=("postgresql", "postgres"), required=True)
    REDIS_URL: str = _setting("", read.url, schemes=("redis", "rediss", "unix"), required=True)
    VAR_DIR: str = field(default=str(ROOT / "var"), metadata=DERIVED)  # from QUIZAPP_VAR_DIR

    # Postgres pool (quizapp/db.py)
    DB_POOL_MIN: int = _setting(2, minimum=0)
    DB_POOL_MAX: int = _setting(20, minimum=1, maximum=500)
    DB_POOL_TIMEOUT: float = 15.0
    DB_CONNECT_TIMEOUT: int = _setting(5, minimum=1)
    DB_STATEMENT_TIMEOUT_MS: int = _setting(30000, minimum=1)
    DB_LOCK_TIMEOUT_MS: int = _setting(5000, minimum=1)
    DB_IDLE_TX_TIMEOUT_MS: int = _setting(60000, minimum=1)
    DB_TX_RETRIES: int = _setting(3, minimum=1, maximum=10)

    # Redis
    REDIS_SOCKET_TIMEOUT: float = 2.0
    REDIS_MAX_CONNECTIONS: int = _setting(200, minimum=2)
    READY_TIMEOUT: float = 1.0

    # Sessions
    SESSION_LIFETIME_HOURS: int = _setting(24, minimum=1)
    SESSION_COOKIE_SECURE: bool = field(default=False, metadata=DERIVED)  # unset: true in production
    SESSION_REFRESH_SECONDS: int = _setting(300, minimum=0)

    # Edge protection (issue: security)
    RATELIMIT_ENABLED: bool = True
    RATELIMIT_DEFAULT: str = _setting("60/minute", read.rate_limits)  # per person (session) and page
    RATELIMIT_PERSON_TOTAL: str = _setting("1000/hour", read.rate_limits)  # per person, all pages together
    RATELIMIT_ADDRESS_PAGES: str = _setting("3000/minute", read.rate_limits)  # per address: a crowd
    RATELIMIT_VISITOR_PAGES: str = _setting("60/minute;600/hour", read.rate_limits)  # per address, no session
    RATELIMIT_NEW_SESSIONS: str = _setting("60/minute;600/hour", read.rate_limits)  # session-less POSTs
    RATELIMIT_IPV6_PREFIX: int = _setting(64, minimum=16, maximum=128)
    RATELIMIT_SUBMIT: str = _setting("20/minute", read.rate_limits)
    RATELIMIT_EMAIL: str = _setting("5/minute", read.rate_limits)
    RATELIMIT_LOGIN: str = _setting("5/minute", read.rate_limits)
    RATELIMIT_LOGIN_GLOBAL: str = _setting("60/minute", read.rate_limits)
    RATELIMIT_POLL: str = _setting("120/minute", read.rate_limits)
    RATELIMIT_STRATEGY: str = _setting(
        "sliding-window-counter", read.choice, choices=("sliding-window-counter", "fixed-window")
    )
    RATELIMIT_HEADERS_ON_SUCCESS: bool = False
    TRUSTED_PROXY_HOPS: int = _setting(0, minimum=0, maximum=5)
    MAX_CONTENT_LENGTH: int = _setting(10 * 1024 * 1024, minimum=1024)
    CSRF_ENABLED: bool = True
    REQUEST_LOG_ALL: bool = False
    ADMIN_PASSWORD_HASH: str = _setting("", read.password_hash)
    ADMIN_IDLE_MINUTES: int = _setting(30, minimum=1)
    ADMIN_HASH_CONCURRENCY: int = _setting(0, minimum=0, maximum=64)  # per worker; 0 = half the cores, >= 1

    # Quiz
    QUIZ_DAILY_QUOTA: int = _setting(20, minimum=1)  # results per person (session) and day
    QUIZ_ADDRESS_DAILY_QUOTA: int = _setting(1000, minimum=1)  # results per address (IPv6: /64) and day
    QUIZ_CONTENT_PATH: str = str(ROOT / "quizapp" / "quiz" / "content.yaml")
    PUBLIC_BASE_URL: str = _setting("", read.url, schemes=("https", "http"))

    # Payments
    PAYMENT_PROVIDER: str = _setting("test", read.choice, choices=("test", "stripe"))  # production: stripe
    STRIPE_SECRET_KEY: str = ""
    STRIPE_WEBHOOK_SECRET: str = ""
    STRIPE_PRICE_CENTS: int = _setting(900, minimum=50)
    STRIPE_API_BASE: str = _setting("", read.url, schemes=("https", "http"))
    # Stripe accepts checkout expiries from 30 minutes to 24 hours after it receives the call.
    CHECKOUT_EXPIRES_MINUTES: int = _setting(60, minimum=31, maximum=1439)
    REPORT_LINK_DAYS: int = _setting(30, minimum=1, maximum=3650)

    # Mail (quizapp/mail: the mailer process drains email_outbox)
    SMTP_URL: str = _setting("", read.smtp_url)
    SMTP_CA_FILE: str = ""
    SMTP_TIMEOUT: float = _setting(15.0, minimum=0.5)
    MAIL_FROM: str = "Business Model Fit <no-reply@localhost>"
    MAIL_MAX_ATTEMPTS: int = _setting(8, minimum=1, maximum=100)
    MAIL_RETRY_BASE_SECONDS: float = _setting(30.0, minimum=0.05)
    MAIL_RETRY_MAX_SECONDS: float = _setting(3600.0, minimum=0.05)
    MAIL_POLL_SECONDS: float = _setting(2.0, minimum=0.05)
    MAIL_CONFIRM_DAYS: int = _setting(7, minimum=1)

    # The operator, shown on the privacy, terms, refund and contact pages
    OPERATOR_NAME: str = _setting("", read.stripped)
    OPERATOR_EMAIL: str = _setting("", read.stripped)
    OPERATOR_ADDRESS: str = _setting("", read.stripped)

    # AI analysis
    OPENAI_API_KEY: str = ""
    OPENAI_BASE_URL: str = _setting("", read.url, schemes=("http", "https"))
    OPENAI_MODEL: str = "gpt-4o-mini"
    OPENAI_TIMEOUT: float = 20.0
    AI_RPM: int = _setting(10, minimum=1)
    AI_WINDOW_SECONDS: float = _setting(60.0, minimum=0.5)
    AI_MAX_IN_FLIGHT: int = _setting(8, minimum=1)
    AI_PER_USER: int = _setting(2, minimum=1)
    AI_QUEUE_MAX: int = _setting(500, minimum=1)
    AI_DEADLINE_SECONDS: float = _setting(60.0, minimum=0.5)
    AI_DISPATCHERS: int = _setting(4, minimum=1, maximum=64)
    AI_LEASE_SECONDS: float = _setting(45.0, minimum=0.5)
    AI_RETRIES: int = _setting(3, minimum=1, maximum=10)
    AI_BREAKER_FAILURES: int = _setting(5, minimum=1)
    AI_BREAKER_COOLDOWN: float = _setting(30.0, minimum=0.1)
    AI_CACHE_SECONDS: int = _setting(3600, minimum=1)
    AI_FALLBACK_CACHE_SECONDS: int = _setting(30, minimum=1)

    # Admission control and the waiting room (quizapp/admission)
    ADMISSION_ENABLED: bool = True
    ADMISSION_MAX_IN_FLIGHT: int = _setting(128, minimum=1, maximum=10000)
    ADMISSION_QUEUE_TIMEOUT_MS: int = _setting(2000, minimum=0)
    ADMISSION_CAPACITY: int = _setting(2000, minimum=1)
    ADMISSION_VISIT_SECONDS: int = _setting(120, minimum=1)
    ADMISSION_PASS_SECONDS: int = _setting(1800, minimum=60)
    ADMISSION_REFRESH_MIN_SECONDS: int = _setting(5, minimum=1)
    # Visitors admitted per second at most: "auto" (-1.0: 2 x capacity / visit seconds, from the live
    # capacity), "off" (0.0) or a number; the bucket holds pace x burst seconds (at least 1 visitor).
    ADMISSION_PACE_PER_SECOND: float = _setting(-1.0, read.pace)
    ADMISSION_PACE_BURST_SECONDS: int = _setting(5, minimum=1, maximum=3600)
    # This instance is the door (nginx sends it the visitors without a pass): it answers an admitted
    # visitor who keeps cookies with a 307 to the same URL, so the pool renders every page.
    ADMISSION_DOOR: bool = False

    # Operations
    RETENTION_DAYS: int = _setting(30, minimum=2)
    RETENTION_AUDIT_DAYS: int = _setting(365, minimum=2)
    HEARTBEAT_SECONDS: float = _setting(2.0, minimum=0.1)
    INSTANCE_NAME: str = field(default_factory=lambda: os.uname().nodename)

    # Scale-out (issue 15): Postgres TLS, Redis Sentinel and TLS (PgBouncer needs nothing here).
    DATABASE_SSLMODE: str = _setting("", read.choice, choices=("", *SSL_MODES))  # unset: libpq's default
    DATABASE_SSLROOTCERT: str = _setting("", read.readable_file)
    DATABASE_SSLCERT: str = _setting("", read.readable_file)
    DATABASE_SSLKEY: str = _setting("", read.readable_file)
    REDIS_SENTINELS: str = _setting("", read.host_ports)
    REDIS_SENTINEL_SERVICE: str = "quizapp"
    REDIS_SENTINEL_PASSWORD: str = ""
    REDIS_TLS_CA: str = _setting("", read.readable_file)
    REDIS_TLS_CERT: str = _setting("", read.readable_file)
    REDIS_TLS_KEY: str = _setting("", read.readable_file)
    REDIS_WAIT_REPLICAS: int = _setting(0, minimum=0, maximum=5)
    REDIS_WAIT_TIMEOUT_MS: int = _setting(200, minimum=1, maximum=10000)
    REDIS_WAIT_SKIP_SECONDS: int = _setting(5, minimum=0, maximum=300)

    @property
    def is_production(self) -> bool:
        return self.ENV == "production"

    @classmethod
    def from_env(cls, environ=None, **overrides) -> Config:
        """Read and validate every variable; raise ConfigError naming the first bad one."""
        env = dict(os.environ if environ is None else environ)
        env.update({k: str(v) for k, v in overrides.items()})
        mode = read.choice(env, "QUIZAPP_ENV", cls.ENV, ENVIRONMENTS)
        var_dir = Path(env.get("QUIZAPP_VAR_DIR") or cls.VAR_DIR)
        values = dict(
            ENV=mode,
            SECRET_KEY=_secret_key(env, mode, var_dir),
            VAR_DIR=str(var_dir),
            SESSION_COOKIE_SECURE=read.flag(env, "SESSION_COOKIE_SECURE", mode == "production"),
        )
        for setting in fields(cls):
            if setting.metadata.get("derived"):
                continue
            reader = setting.metadata.get("reader") or _BY_TYPE[setting.type]
            default = setting.default if setting.default is not MISSING else setting.default_factory()
            values[setting.name] = reader(env, setting.name, default, **setting.metadata.get("options", {}))
        _check_together(values, env, mode)
        return cls(**values)

    def as_flask(self) -> dict:
        """The settings under the names Flask and its extensions read."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _check_together(values: dict, env, mode: str) -> None:
    """The rules that span variables, after each one was read on its own."""
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
    if values["DATABASE_SSLMODE"] == "verify-full" and not values["DATABASE_SSLROOTCERT"]:
        raise ConfigError("DATABASE_SSLROOTCERT is required when DATABASE_SSLMODE=verify-full")
    for cert, key in (("DATABASE_SSLCERT", "DATABASE_SSLKEY"), ("REDIS_TLS_CERT", "REDIS_TLS_KEY")):
        if bool(values[cert]) != bool(values[key]):
            raise ConfigError(f"{cert} and {key} must be set together")
    tls_files = values["REDIS_TLS_CA"] or values["REDIS_TLS_CERT"]
    if tls_files and urlparse(env.get("REDIS_URL", "")).scheme != "rediss":
        raise ConfigError("REDIS_TLS_* are set but REDIS_URL is not a rediss:// URL")
