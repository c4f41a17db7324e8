"""The waiting-room page: rendered once per worker with holes, filled in per answer (no Jinja per answer)."""

from __future__ import annotations

import math

from flask import current_app, render_template, request
from markupsafe import escape

TEMPLATE = "admission/waiting.html"
HOLES = ("refresh_s", "refresh_url", "position", "of_queue", "wait")
_MARK = "\x00"  # never in a rendered page: the template holds none, and escaping leaves it alone
CACHE_KEY = "admission.waiting_page"


def wait_phrase(seconds: int) -> str:
    """The estimated wait as the page says it."""
    return "under a minute" if seconds < 60 else f"about {math.ceil(seconds / 60)} minutes"


def _pieces() -> list[str]:
    """The page split at its holes: literal, hole name, literal, ... (even indexes are literals).

    The page around the numbers is the same for every answer of a worker (its links depend only on
    the script root); the door answers many of them under overload, so Jinja renders it once."""
    cache = current_app.extensions.setdefault(CACHE_KEY, {})
    pieces = cache.get(request.script_root)
    if pieces is None:
        marks = {name: f"{_MARK}{name}{_MARK}" for name in HOLES}  # autoescape leaves them as they are
        pieces = render_template(TEMPLATE, **marks).split(_MARK)
        unknown = set(pieces[1::2]) - set(HOLES)
        if unknown or len(pieces) % 2 == 0:
            raise RuntimeError(f"{TEMPLATE}: holes out of place: {sorted(unknown)}")
        cache[request.script_root] = pieces
    return pieces


def waiting_page(answer, *, refresh_url: str) -> str:
    """The page for one answer (a service.WaitingAnswer): the rendered page with its numbers in."""
    values = {
        "refresh_s": str(answer.refresh_s),
        "refresh_url": str(escape(refresh_url)),
        "position": str(answer.position),
        "of_queue": f" of {answer.queue_length}" if answer.queue_length > 1 else "",
        "wait": wait_phrase(answer.estimated_wait_s),
    }
    pieces = _pieces()
    out = pieces[:]
    for i in range(1, len(out), 2):
        out[i] = values[out[i]]
    return "".join(out)
