"""Forge a logged-in admin session for tests that are not about logging in."""

from __future__ import annotations

import time


def admin_session_fields(*, user: str | None = None, seen_at: float | None = None) -> dict:
    """The session keys a successful admin login leaves (user: the audit actor, else "admin")."""
    fields = {"admin": True, "admin_seen": time.time() if seen_at is None else seen_at}
    if user is not None:
        fields["admin_user"] = user
    return fields


def forge_admin_session(client, *, user: str | None = None, seen_at: float | None = None) -> None:
    """Make a Flask test client an admin without going through the login form."""
    with client.session_transaction() as session:
        session.update(admin_session_fields(user=user, seen_at=seen_at))
