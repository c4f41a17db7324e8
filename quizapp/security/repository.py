"""SQL for the audit trail of administrative actions (table audit_log, migrations/0001)."""

from __future__ import annotations

import json


def insert_audit_entry(cur, actor: str, action: str, detail: dict | None = None) -> int:
    cur.execute(
        "INSERT INTO audit_log (actor, action, detail) VALUES (%(actor)s, %(action)s, %(detail)s) "
        "RETURNING id",
        {"actor": actor, "action": action, "detail": json.dumps(detail or {})},
    )
    row = cur.fetchone()
    return row["id"] if isinstance(row, dict) else row[0]


def recent_audit_entries(cur, limit: int = 50) -> list[dict]:
    cur.execute(
        "SELECT id, actor, action, detail, created_at FROM audit_log ORDER BY id DESC LIMIT %(limit)s",
        {"limit": limit},
    )
    return [dict(row) for row in cur.fetchall()]
