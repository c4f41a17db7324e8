"""Links: absolute ones for mail and provider redirects, the buyer-only report link (signed,
revocable), and the fixed ones every page template repeats."""

from __future__ import annotations

from flask import current_app, has_request_context, request, url_for

from .signing import read_token, sign_token

REPORT_LINK = "report-link"


def absolute_url(endpoint: str, **values) -> str:
    """PUBLIC_BASE_URL + path when configured (mail leaves the request), else the request's host."""
    base = current_app.config.get("PUBLIC_BASE_URL", "").rstrip("/")
    if base:
        return base + url_for(endpoint, **values)
    return url_for(endpoint, _external=True, **values)


FIXED_URLS_KEY = "links.fixed_urls"
_MAX_FIXED_URLS = 256


def template_url_for(endpoint: str, **values) -> str:
    """url_for for templates: a link that names no id (the stylesheet, the footer's pages) is the
    same on every page, so it is built once per worker and script root; others as url_for does."""
    if values.keys() - {"filename"} or not has_request_context():  # an id, _external, a mail
        return url_for(endpoint, **values)
    cache = current_app.extensions.setdefault(FIXED_URLS_KEY, {})
    key = (endpoint, values.get("filename"), request.script_root)
    url = cache.get(key)
    if url is None:
        url = url_for(endpoint, **values)
        if len(cache) < _MAX_FIXED_URLS:
            cache[key] = url
    return url


def init_app(app) -> None:
    app.jinja_env.globals["url_for"] = template_url_for


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
