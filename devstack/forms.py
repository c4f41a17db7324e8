"""Read the CSRF token out of a rendered form: the one regex every test shares."""

from __future__ import annotations

import re

CSRF_TOKEN_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token(page) -> str:
    """The csrf_token input's value from a Flask or requests response, or from HTML text/bytes."""
    if isinstance(page, bytes):
        html = page.decode()
    elif isinstance(page, str):
        html = page
    elif hasattr(page, "get_data"):  # a Flask test response
        html = page.get_data(as_text=True)
    else:  # a requests response
        html = page.text
    match = CSRF_TOKEN_RE.search(html or "")
    assert match, "page has no csrf_token input"
    return match.group(1)
