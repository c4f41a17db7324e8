"""The waiting-room page: rendered once per worker with slots, filled in per answer (no Jinja per answer)."""

from __future__ import annotations

import math

from flask import render_template
from markupsafe import escape

from ..slotted import filled_page, slot

TEMPLATE = "admission/waiting.html"
SLOTS = ("refresh_s", "refresh_url", "position", "of_queue", "wait")


def wait_phrase(seconds: int) -> str:
    """The estimated wait as the page says it."""
    if seconds < 60:
        return "under a minute"
    minutes = math.ceil(seconds / 60)
    return "about a minute" if minutes == 1 else f"about {minutes} minutes"


def _waiting_page_with_slots() -> str:
    # The page around the numbers is the same for every answer of a worker (its links depend only
    # on the script root); the door answers many of them under overload, so Jinja renders it once.
    return render_template(TEMPLATE, **{name: slot(name) for name in SLOTS})


def waiting_page(answer, *, refresh_url: str) -> str:
    """The page for one answer (a service.WaitingAnswer): the rendered page with its numbers in."""
    values = {
        "refresh_s": str(answer.refresh_s),
        "refresh_url": str(escape(refresh_url)),
        "position": str(answer.position),
        "of_queue": f" of {answer.queue_length}" if answer.queue_length > 1 else "",
        "wait": wait_phrase(answer.estimated_wait_s),
    }
    return filled_page(TEMPLATE, key=(), values=values, render=_waiting_page_with_slots)
