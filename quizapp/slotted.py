"""Pages rendered once per worker with named slots, filled per request by one join: no Jinja per request."""

from __future__ import annotations

from collections.abc import Callable

from flask import current_app, request

CACHE_KEY = "slotted.pages"
_MARK = "\x00"  # never in a rendered page: the templates hold none, and autoescape leaves it alone


def slot(name: str) -> str:
    """What a template is given in place of slot `name`'s value: autoescape leaves it as it is."""
    return f"{_MARK}{name}{_MARK}"


def filled_page(
    template: str,
    *,
    key: tuple,
    values: dict[str, str],
    render: Callable[[], str],
    max_pages: int | None = None,
) -> str:
    """`template` as `render()` renders it, with `values` (escaped already) in the slots.

    `render` runs once per worker for each (template, script root, key): it puts slot(name) where
    each value of `values` goes, and `key` names everything else the page shows. A template whose
    keys are not a small fixed set keeps `max_pages` of them; the others are rendered each time.
    """
    # The hot path: each proxy resolved once; root_path is the script root without a property call.
    app, req = current_app._get_current_object(), request._get_current_object()
    page_key = (req.root_path, *key)
    try:
        pieces, only_slot = app.extensions[CACHE_KEY][template][page_key]
    except KeyError:  # the first request of this worker for this page
        pages = app.extensions.setdefault(CACHE_KEY, {}).setdefault(template, {})
        pieces, only_slot = entry = _split(template, render(), names=values.keys())
        if max_pages is None or len(pages) < max_pages:
            pages[page_key] = entry
    if only_slot:  # the same slot wherever there is one (a CSRF token): its value joins the literals
        return values[only_slot].join(pieces)
    out = pieces.copy()
    for i in range(1, len(out), 2):
        out[i] = values[out[i]]
    return "".join(out)


def _split(template: str, html: str, *, names) -> tuple[tuple[str, ...] | list[str], str | None]:
    """The rendered page cut at its slots, checked: (literals, the slot) if it has one slot name,
    else ([literal, slot name, literal, ...], None)."""
    pieces = html.split(_MARK)
    found = set(pieces[1::2])
    if len(pieces) % 2 == 0 or found != set(names):
        unknown, missing = sorted(found - set(names)), sorted(set(names) - found)
        raise RuntimeError(f"{template}: slots out of place: unknown {unknown}, missing {missing}")
    if len(found) == 1:
        return tuple(pieces[0::2]), found.pop()
    return pieces, None
