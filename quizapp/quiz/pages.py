"""Rendered quiz pages kept per worker: a question page is the same HTML for everyone but the token."""

from __future__ import annotations

from flask import current_app, render_template, request

from ..extensions import csrf

CACHE_KEY = "quiz.page_cache"
_TOKEN_SLOT = "__csrf_token_slot__"  # rendered in place of the visitor's token, replaced per request


def cached_page(template: str, key: tuple, **context) -> str:
    """render_template, once per worker for each (template, key); the CSRF token filled in per request.

    `key` must name everything the page shows (here: the question and the selected answer).
    Jinja renders a question page in about a millisecond; a dict lookup and one str.replace do not.
    """
    cache = current_app.extensions.setdefault(CACHE_KEY, {})
    full_key = (template, request.script_root, *key)
    html = cache.get(full_key)
    if html is None:
        html = cache[full_key] = render_template(template, csrf_token=lambda: _TOKEN_SLOT, **context)
    return html.replace(_TOKEN_SLOT, csrf.token())
