"""Signed, expiring tokens for links sent by mail (report access, email confirmation, unsubscribe)."""

from __future__ import annotations

from itsdangerous import BadData, URLSafeTimedSerializer


def sign_token(*, secret_key: str, purpose: str, payload) -> str:
    """A URL-safe token for `payload`; its purpose is part of the signature (no reuse across links)."""
    return URLSafeTimedSerializer(secret_key, salt=f"quizapp.{purpose}").dumps(payload)


def read_token(*, secret_key: str, purpose: str, token: str, max_age_seconds: int | None = None):
    """The payload of a valid token, or None when it is forged, garbled, for another purpose or expired."""
    if not token or len(token) > 512:
        return None
    serializer = URLSafeTimedSerializer(secret_key, salt=f"quizapp.{purpose}")
    try:
        return serializer.loads(token, max_age=max_age_seconds)
    except BadData:
        return None
