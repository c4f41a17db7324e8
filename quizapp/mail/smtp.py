"""SMTP_URL parsing and one authenticated, encrypted SMTP connection (standard library smtplib)."""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from urllib.parse import unquote, urlparse

# scheme -> (security, default port)
SCHEMES = {"smtp": ("plain", 25), "smtp+starttls": ("starttls", 587), "smtps": ("tls", 465)}
LOOPBACK = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    security: str  # plain | starttls | tls
    username: str = ""
    password: str = ""

    @property
    def loopback(self) -> bool:
        return self.host in LOOPBACK or self.host.startswith("127.")


def parse_smtp_url(url: str) -> SmtpSettings:
    """smtp+starttls://user:pass@host:587, smtps://user:pass@host:465 or smtp://127.0.0.1:25."""
    from ..config import ConfigError

    parsed = urlparse(url)
    if parsed.scheme not in SCHEMES or not parsed.hostname:
        raise ConfigError(
            "SMTP_URL must look like smtp+starttls://user:password@host:587 or smtps://user:password@host:465"
        )
    security, default_port = SCHEMES[parsed.scheme]
    try:
        port = parsed.port or default_port
    except ValueError:
        raise ConfigError("SMTP_URL has an invalid port") from None
    settings = SmtpSettings(
        host=parsed.hostname,
        port=port,
        security=security,
        username=unquote(parsed.username or ""),
        password=unquote(parsed.password or ""),
    )
    if security == "plain" and (settings.username or not settings.loopback):
        # A password or a mail leaving this machine never travels unencrypted.
        raise ConfigError("SMTP_URL: use smtp+starttls:// or smtps:// for a remote server or with a password")
    return settings


def tls_context(ca_file: str = "") -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_file or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def connect(settings: SmtpSettings, *, timeout: float, ca_file: str = "") -> smtplib.SMTP:
    """An open, encrypted (unless loopback plain) and logged-in SMTP connection."""
    if settings.security == "tls":
        conn = smtplib.SMTP_SSL(settings.host, settings.port, timeout=timeout, context=tls_context(ca_file))
    else:
        conn = smtplib.SMTP(settings.host, settings.port, timeout=timeout)
    try:
        conn.ehlo()
        if settings.security == "starttls":
            conn.starttls(context=tls_context(ca_file))  # raises if the server does not offer it
            conn.ehlo()
        if settings.username:
            conn.login(settings.username, settings.password)
    except BaseException:
        conn.close()
        raise
    return conn
