"""SQL for the admin area: the audit trail of administrative actions."""

from __future__ import annotations

from psycopg2.extras import Json


def insert_audit(cur, actor: str, action: str, detail: dict) -> dict:
    cur.execute(
        "INSERT INTO audit_log (actor, action, detail) VALUES (%(actor)s, %(action)s, %(detail)s) "
        "RETURNING id, actor, action, detail, created_at",
        {"actor": actor, "action": action, "detail": Json(detail)},
    )
    return cur.fetchone()


def recent_audit(cur, limit: int = 10) -> list[dict]:
    cur.execute(
        "SELECT id, actor, action, detail, created_at FROM audit_log "
        "ORDER BY created_at DESC, id DESC LIMIT %(limit)s",
        {"limit": limit},
    )
    return cur.fetchall()
