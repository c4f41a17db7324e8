"""Every id and form field parser in one place: odd input is a 400, a well-formed unknown id a 404.

Odd means: control characters (NUL included), lone surrogates, non-ASCII digits such as '²',
characters outside an id's alphabet, or values longer than any real one. Path ids are parsed by
the URL converters below (registered in create_app), so a view only ever sees a well-formed id;
form fields go through the field parsers.
"""

from __future__ import annotations

import re

from werkzeug.exceptions import BadRequest as HTTPBadRequest
from werkzeug.routing import BaseConverter

from . import errors

# secrets.token_urlsafe(16) is 22 characters; older or hand-made ids stay within 64.
ID_ALPHABET = r"[A-Za-z0-9_-]"
PUBLIC_ID = re.compile(ID_ALPHABET + r"{1,64}")
# Stripe checkout session ids are "cs_test_..."/"cs_live_..." (66 characters today, 255 at most).
CHECKOUT_SESSION_ID = re.compile(ID_ALPHABET + r"{1,255}")
QUESTION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
# Signed mail-link tokens (URL-safe base64 parts joined by dots).
SIGNED_TOKEN = re.compile(r"[A-Za-z0-9_.-]{1,1024}")
# Far above any real choice ("0".."8", "1".."5"), far below anything costly to parse.
MAX_CHOICE_CHARS = 3
MAX_PASSWORD_CHARS = 256
MAX_EMAIL_CHARS = 254
# Control characters (C0, DEL, C1), lone surrogates, the line/paragraph separators and U+FFFD
# (what a lone surrogate or invalid UTF-8 in a form becomes once decoded).
_ODD_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029\ufffd]")


class InvalidInput(errors.BadRequest, HTTPBadRequest):
    """A malformed value, a 400 with its message. Both kinds: a QuizError (views that re-render a
    form catch it) and an HTTPException (Flask turns one raised while routing into the error page)."""


def has_odd_chars(value: str) -> bool:
    return bool(_ODD_CHARS.search(value))


def _matching(pattern: re.Pattern, value, message: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise InvalidInput(message)
    return value


def public_id(value) -> str:
    """A result's public id (also the AI analysis subject id)."""
    return _matching(PUBLIC_ID, value, "That result id is not valid.")


def checkout_session_id(value) -> str:
    return _matching(CHECKOUT_SESSION_ID, value, "That checkout id is not valid.")


def question_id(value) -> str:
    return _matching(QUESTION_ID, value, "That question id is not valid.")


def signed_token(value) -> str:
    return _matching(SIGNED_TOKEN, value, "That link is not valid.")


def choice(value) -> int | None:
    """A choice field: ASCII digits only ('²' and '٣' pass isdigit() but are not choices); None if odd."""
    if not isinstance(value, str):
        return None
    value = value.strip()
    if not value or len(value) > MAX_CHOICE_CHARS or not (value.isascii() and value.isdigit()):
        return None
    return int(value)


def text_field(value, *, max_chars: int, message: str) -> str:
    """A free-text field: no control characters or lone surrogates, at most max_chars."""
    value = value if isinstance(value, str) else ""
    if len(value) > max_chars or has_odd_chars(value):
        raise InvalidInput(message)
    return value


def password(value) -> str:
    """The admin password field; empty or over-long values never reach the (costly) hash check."""
    value = text_field(value, max_chars=MAX_PASSWORD_CHARS, message="That password is not valid.")
    if not value:
        raise InvalidInput("Please enter the password.")
    return value


def email(value) -> str:
    return text_field(value, max_chars=MAX_EMAIL_CHARS, message="Please enter a valid email address.")


def form_public_id(form) -> str:
    """The public_id field of a form (checkout)."""
    return public_id(form.get("public_id", ""))


class _IdConverter(BaseConverter):
    """Match any one path segment, then parse it: odd values are a 400, not a silent 404."""

    regex = "[^/]+"
    parse = staticmethod(public_id)

    def to_python(self, value: str) -> str:
        return self.parse(value)


class PublicIdConverter(_IdConverter):
    parse = staticmethod(public_id)


class CheckoutSessionIdConverter(_IdConverter):
    parse = staticmethod(checkout_session_id)


class QuestionIdConverter(_IdConverter):
    parse = staticmethod(question_id)


class SignedTokenConverter(_IdConverter):
    parse = staticmethod(signed_token)


CONVERTERS = {
    "public_id": PublicIdConverter,
    "checkout_id": CheckoutSessionIdConverter,
    "question_id": QuestionIdConverter,
    "signed_token": SignedTokenConverter,
}


def register_converters(app) -> None:
    """Before any blueprint is registered: the rules name these converters."""
    app.url_map.converters.update(CONVERTERS)
