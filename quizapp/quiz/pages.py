"""Rendered quiz fragments kept per worker: the same HTML for everyone but a few slots filled per request."""

from __future__ import annotations

from flask import render_template
from markupsafe import Markup, escape

from ..extensions import csrf
from ..slotted import filled_page, slot

MODEL_TEMPLATE = "quiz/_model.html"
_TOKEN_SLOT = slot("csrf_token")
_SCORE_SLOT = slot("score")
_REASONS_SLOT = slot("reasons")


def _token_slot() -> str:
    return _TOKEN_SLOT  # the templates call csrf_token(): rendered in place of the visitor's token


def cached_page(template: str, key: tuple, **context) -> str:
    """render_template, once per worker for each (template, key); the CSRF token filled in per request.

    `key` must name everything the page shows (here: the question and the selected answer).
    Jinja renders a question page in about a millisecond; a dict lookup and one join do not.
    """
    return filled_page(
        template,
        key=key,
        values={"csrf_token": csrf.token()},
        render=lambda: render_template(template, csrf_token=_token_slot, **context),
    )


def model_card(m: dict, *, detail: bool, level: int, hide_name: bool = False) -> Markup:
    """quiz/_model.html for one ranked model: rendered once per worker for each model and layout,
    with the score and the reasons (all that differs between two results) filled in per request.

    A results page shows every model: rendering each from the template cost ~150 escapes a page.
    """
    values = {
        "score": str(escape(m["score"])),
        "reasons": "".join(f"<li>{escape(r)}</li>" for r in m["reasons"]),
    }
    html = filled_page(
        MODEL_TEMPLATE,
        key=(m["id"], detail, level, hide_name),
        values=values,
        render=lambda: _model_card_with_slots(m, detail=detail, level=level, hide_name=hide_name),
    )
    # The template's own autoescaped output, every value put in escaped above: safe to mark.
    return Markup(html)  # nosec B704


def _model_card_with_slots(m: dict, *, detail: bool, level: int, hide_name: bool) -> str:
    slots = {**m, "score": _SCORE_SLOT, "reasons": [_REASONS_SLOT]}
    html = render_template(MODEL_TEMPLATE, m=slots, detail=detail, level=level, hide_name=hide_name)
    # The template's reasons loop is `<li>{{ r }}</li>`: the slot takes the item's tags, so that no
    # reasons leave no item.
    item = f"<li>{_REASONS_SLOT}</li>"
    if html.count(item) != 1:
        raise RuntimeError(f"{MODEL_TEMPLATE}: the reasons are no longer one `<li>{{{{ r }}}}</li>` loop")
    return html.replace(item, _REASONS_SLOT)
