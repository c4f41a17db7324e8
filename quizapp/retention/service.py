"""Prune each table in short batches (one transaction each) so no lock is held for long."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg2

from . import repository

log = logging.getLogger(__name__)

BATCH = 5000


@dataclass(frozen=True)
class RetentionPolicy:
    """Days to keep: daily quota rows and sent mail (RETENTION_DAYS), audit entries (RETENTION_AUDIT_DAYS)."""

    days: int
    audit_days: int


def _drain(conn, delete, **cutoff) -> int:
    total = 0
    while True:
        with conn, conn.cursor() as cur:
            deleted = delete(cur, batch=BATCH, **cutoff)
        total += deleted
        if deleted < BATCH:
            return total


def prune(dsn: str, policy: RetentionPolicy, now: datetime | None = None) -> dict[str, int]:
    """Delete what is older than the policy; returns rows deleted per table."""
    now = now or datetime.now(UTC)
    cutoff = now - timedelta(days=policy.days)
    conn = psycopg2.connect(dsn, application_name="quizapp-retention", connect_timeout=10)
    try:
        deleted = {
            **{
                table: _drain(conn, repository.delete_old_quota, table=table, cutoff_day=cutoff.date())
                for table in repository.DAILY_QUOTA_TABLES
            },
            "email_outbox": _drain(conn, repository.delete_sent_mail, cutoff=cutoff),
            "audit_log": _drain(
                conn, repository.delete_old_audit, cutoff=now - timedelta(days=policy.audit_days)
            ),
        }
    finally:
        conn.close()
    log.info("retention.pruned", extra=deleted)
    return deleted
