"""Absolute links for mail and provider redirects, and the buyer-only report link (signed, revocable)."""

from __future__ import annotations

from flask import current_app, url_for

from .signing import read_token, sign_token

REPORT_LINK = "report-link"


def absolute_url(endpoint: str, **values) -> str:
    """PUBLIC_BASE_URL + path when configured (mail leaves the request), else the request's host."""
    base = current_app.config.get("PUBLIC_BASE_URL", "").rstrip("/")
    if base:
        return base + url_for(endpoint, **values)
    return url_for(endpoint, _external=True, **values)


def report_link_token(*, public_id: str, link_version: int) -> str:
    payload = {"r": public_id, "v": link_version}
    return sign_token(secret_key=current_app.config["SECRET_KEY"], purpose=REPORT_LINK, payload=payload)


def report_link(*, public_id: str, link_version: int) -> str:
    """The link mailed to the buyer: opens the report on any device until it expires or is revoked."""
    token = report_link_token(public_id=public_id, link_version=link_version)
    return absolute_url("quiz.report", public_id=public_id, key=token)


def report_link_valid(*, token: str | None, public_id: str, link_version: int) -> bool:
    """True for an unexpired link for this result whose version was not revoked since."""
    payload = read_token(
        secret_key=current_app.config["SECRET_KEY"],
        purpose=REPORT_LINK,
        token=token or "",
        max_age_seconds=current_app.config["REPORT_LINK_DAYS"] * 86400,
    )
    return isinstance(payload, dict) and payload.get("r") == public_id and payload.get("v") == link_version
