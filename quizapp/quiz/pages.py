"""Rendered quiz fragments kept per worker: the same HTML for everyone but a few slots filled per request."""

from __future__ import annotations

from flask import current_app, render_template, request
from markupsafe import Markup, escape

from ..extensions import csrf

CACHE_KEY = "quiz.page_cache"
_TOKEN_SLOT = "__csrf_token_slot__"  # rendered in place of the visitor's token, replaced per request
_SCORE_SLOT = "__model_score_slot__"
_REASONS_SLOT = "__model_reasons_slot__"
MODEL_TEMPLATE = "quiz/_model.html"


def cached_page(template: str, key: tuple, **context) -> str:
    """render_template, once per worker for each (template, key); the CSRF token filled in per request.

    `key` must name everything the page shows (here: the question and the selected answer).
    Jinja renders a question page in about a millisecond; a dict lookup and one str.replace do not.
    """
    cache = current_app.extensions.setdefault(CACHE_KEY, {})
    full_key = (template, request.script_root, *key)
    parts = cache.get(full_key)
    if parts is None:  # the page cut at each token slot: joined with the token per request
        html = render_template(template, csrf_token=lambda: _TOKEN_SLOT, **context)
        parts = cache[full_key] = tuple(html.split(_TOKEN_SLOT))
    return csrf.token().join(parts)


def model_card(m: dict, *, detail: bool, level: int, hide_name: bool = False) -> Markup:
    """quiz/_model.html for one ranked model: rendered once per worker for each model and layout,
    with the score and the reasons (all that differs between two results) filled in per request.

    A results page shows every model: rendering each from the template cost ~150 escapes a page.
    """
    cache = current_app.extensions.setdefault(CACHE_KEY, {})
    key = (MODEL_TEMPLATE, request.script_root, m["id"], detail, level, hide_name)
    html = cache.get(key)
    if html is None:
        slots = {**m, "score": _SCORE_SLOT, "reasons": [_REASONS_SLOT]}
        html = cache[key] = render_template(
            MODEL_TEMPLATE, m=slots, detail=detail, level=level, hide_name=hide_name
        )
    # The template's reasons loop is `<li>{{ r }}</li>`: one slot item becomes one item per reason.
    if m["reasons"]:
        html = html.replace(_REASONS_SLOT, "</li><li>".join(str(escape(r)) for r in m["reasons"]))
    else:
        html = html.replace(f"<li>{_REASONS_SLOT}</li>", "")
    # The template's own autoescaped output, every value put in escaped above: safe to mark.
    return Markup(html.replace(_SCORE_SLOT, str(escape(m["score"]))))  # nosec B704
