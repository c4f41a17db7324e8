"""SQL for the audit trail of administrative actions (table audit_log, migrations/0001)."""

from __future__ import annotations

from psycopg2.extras import Json


def insert_audit(cur, *, actor: str, action: str, detail: dict | None = None) -> int:
    """Append one audit row; returns its id."""
    cur.execute(
        "INSERT INTO audit_log (actor, action, detail) VALUES (%(actor)s, %(action)s, %(detail)s) "
        "RETURNING id",
        {"actor": actor, "action": action, "detail": Json(detail or {})},
    )
    row = cur.fetchone()
    return row["id"] if isinstance(row, dict) else row[0]


def recent_audit(cur, limit: int = 10) -> list[dict]:
    cur.execute(
        "SELECT id, actor, action, detail, created_at FROM audit_log "
        "ORDER BY created_at DESC, id DESC LIMIT %(limit)s",
        {"limit": limit},
    )
    return cur.fetchall()
