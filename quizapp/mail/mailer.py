"""The mailer process: claims due email_outbox rows (FOR UPDATE SKIP LOCKED) and sends them over SMTP.

Run: python -m quizapp.mail.mailer   (make run, make stack and systemd/quizapp-mailer.service start it)
Any number of mailers may run: each row is locked by the one sending it until its outcome is committed.
"""

from __future__ import annotations

import logging
import signal
import smtplib
import sys
import time
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import formatdate, make_msgid, parseaddr
from pathlib import Path

import psycopg2
import psycopg2.extras

from ..config import Config, ConfigError
from ..db import database_tls_options
from . import repository
from .smtp import connect, parse_smtp_url

log = logging.getLogger("quizapp.mail.mailer")  # not __main__ when run with -m


def retry_delay(attempts: int, *, base: float, cap: float) -> float:
    """Exponential backoff: base, 2*base, 4*base ... at most cap seconds."""
    return min(cap, base * 2 ** max(0, attempts - 1))


def build_message(row: dict, *, sender: str) -> EmailMessage:
    # 998 is RFC 5322's line limit: a long List-Unsubscribe URL stays one plain line, not RFC 2047 words.
    message = EmailMessage(policy=SMTP_POLICY.clone(max_line_length=998))
    message["From"] = sender
    message["To"] = row["email"]
    message["Subject"] = row["subject"] or "Your Business Model Fit result"
    message["Date"] = formatdate(localtime=False)
    domain = parseaddr(sender)[1].rpartition("@")[2] or "localhost"
    message["Message-ID"] = make_msgid(idstring=f"outbox{row['id']}", domain=domain)
    message["Auto-Submitted"] = "auto-generated"
    # RFC 2369 and RFC 8058: mail clients show an unsubscribe button that works in one POST.
    message["List-Unsubscribe"] = f"<{row['unsubscribe_url']}>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.set_content(row["body"])
    return message


class Mailer:
    """Delivers due mail one row per transaction; SMTP failures retry with backoff, then go dead."""

    def __init__(self, config: Config):
        self.config = config
        self.smtp_settings = parse_smtp_url(config.SMTP_URL) if config.SMTP_URL else None
        self.spool = Path(config.VAR_DIR) / "mail"  # development without SMTP_URL: .eml files
        self.conn = None
        self.smtp: smtplib.SMTP | None = None
        self.stopping = False

    def _db(self):
        if self.conn is None or self.conn.closed:
            self.conn = psycopg2.connect(
                self.config.DATABASE_URL,
                application_name="quizapp-mailer",
                connect_timeout=self.config.DB_CONNECT_TIMEOUT,
                cursor_factory=psycopg2.extras.RealDictCursor,
                **database_tls_options(self.config.as_flask()),
            )
        return self.conn

    def send(self, message: EmailMessage) -> None:
        if self.smtp_settings is None:
            self.spool.mkdir(parents=True, exist_ok=True)
            name = message["Message-ID"].strip("<>").replace("/", "_")
            (self.spool / f"{name}.eml").write_bytes(bytes(message))
            return
        if self.smtp is None:
            self.smtp = connect(
                self.smtp_settings, timeout=self.config.SMTP_TIMEOUT, ca_file=self.config.SMTP_CA_FILE
            )
        self.smtp.send_message(message)

    def close_smtp(self) -> None:
        if self.smtp is not None:
            try:
                self.smtp.quit()
            except (smtplib.SMTPException, OSError):
                self.smtp.close()
            self.smtp = None

    def deliver_one(self) -> bool:
        """Send the oldest due mail; False when nothing is due."""
        conn = self._db()
        # One transaction per mail: the row stays locked (other mailers skip it) until its outcome commits.
        with conn, conn.cursor() as cur:
            # Per transaction, not a connection option: PgBouncer (transaction mode) keeps no session state.
            timeout_ms = str(self.config.DB_STATEMENT_TIMEOUT_MS)
            cur.execute("SELECT set_config('statement_timeout', %(ms)s, true)", {"ms": timeout_ms})
            row = repository.claim_due(cur)
            if row is None:
                return False
            if row["unsubscribed_at"] and row["kind"] not in repository.TRANSACTIONAL_KINDS:
                repository.mark_cancelled(cur, row["id"], reason="unsubscribed")
                return True
            try:
                self.send(build_message(row, sender=self.config.MAIL_FROM))
            except (smtplib.SMTPException, OSError) as exc:
                self.close_smtp()
                attempts = row["attempts"] + 1
                dead = attempts >= self.config.MAIL_MAX_ATTEMPTS
                delay = retry_delay(
                    attempts, base=self.config.MAIL_RETRY_BASE_SECONDS, cap=self.config.MAIL_RETRY_MAX_SECONDS
                )
                repository.mark_failed(
                    cur, row["id"], error=f"{type(exc).__name__}: {exc}", retry_in_seconds=delay, dead=dead
                )
                log.warning(
                    "mail.send_failed", extra={"outbox_id": row["id"], "attempts": attempts, "dead": dead}
                )
                return True
            repository.mark_sent(cur, row["id"])
            log.info("mail.sent", extra={"outbox_id": row["id"], "kind": row["kind"]})
        return True

    def run(self) -> None:
        while not self.stopping:
            try:
                while not self.stopping and self.deliver_one():
                    pass
            except psycopg2.Error:
                log.warning("mail.database_unavailable", exc_info=True)
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
            self.close_smtp()  # idle: do not hold a connection to the SMTP server
            self._sleep(self.config.MAIL_POLL_SECONDS)
        self.close_smtp()
        if self.conn is not None:
            self.conn.close()

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < deadline:
            time.sleep(min(0.1, seconds))

    def stop(self, *_args) -> None:
        self.stopping = True


def main() -> int:
    from ..log_format import configure_logging

    configure_logging()
    try:
        config = Config.from_env()
        if config.is_production and not config.SMTP_URL:
            raise ConfigError("SMTP_URL is required for the mailer when QUIZAPP_ENV=production")
    except ConfigError as exc:
        print(f"quizapp-mailer: configuration error: {exc}", file=sys.stderr)
        return 2
    mailer = Mailer(config)
    signal.signal(signal.SIGTERM, mailer.stop)
    signal.signal(signal.SIGINT, mailer.stop)
    target = "SMTP" if mailer.smtp_settings else f"files in {mailer.spool}"
    log.info("mail.mailer_started", extra={"delivery": target})
    mailer.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
