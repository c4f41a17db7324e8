"""Who may see what: the owner of a result (their session) and the buyer's mailed report link."""

from __future__ import annotations

import hashlib
import hmac

from flask import current_app

from ..links import report_link_valid

USER_KEY = "uk"  # the session's random per-visitor token (quiz.service creates it on start)


def owner_key_from_token(user_token: str) -> str:
    key = current_app.config["SECRET_KEY"].encode()
    return hmac.new(key, f"owner:{user_token}".encode(), hashlib.sha256).hexdigest()[:32]


def session_owner_key(session) -> str | None:
    """The owner key of this session, without creating a session for a visitor who has none."""
    token = session.get(USER_KEY)
    return owner_key_from_token(token) if token else None


def owns(session, attempt: dict) -> bool:
    mine = session_owner_key(session)
    return bool(mine and attempt.get("owner_key")) and hmac.compare_digest(mine, attempt["owner_key"])


def may_read_report(session, attempt: dict, link_token: str | None) -> bool:
    """The paid report opens for the buyer's session or with the buyer's unrevoked mailed link."""
    if attempt["paid_at"] is None:
        return False
    if owns(session, attempt):
        return True
    return report_link_valid(
        token=link_token,
        public_id=attempt["public_id"],
        link_version=attempt["link_version"],
    )
