"""The app's Request class: a small urlencoded form is parsed without werkzeug's form-parser machinery."""

from __future__ import annotations

import functools
import io
from urllib.parse import parse_qsl

import werkzeug.urls  # noqa: F401  registers the "werkzeug.url_quote" codec error handler used below
from flask import Request, current_app
from werkzeug.exceptions import ClientDisconnected
from werkzeug.http import parse_cookie
from werkzeug.utils import cached_property

FORM_MIMETYPE = "application/x-www-form-urlencoded"
# Every form of the app is a few fields; a bigger body (or none announced) takes werkzeug's path.
FAST_FORM_MAX_BYTES = 16 * 1024
PARSED_COOKIES_CACHE_SIZE = 4096  # Cookie headers kept parsed per worker (~1 KB each at most)
PARSED_COOKIES_MAX_CHARS = 1024  # a longer header (not one of ours) is parsed every time


class QuizRequest(Request):
    """flask.Request, but an answer, a start or a submit (a urlencoded body of a few dozen bytes)
    is read and split in one call: werkzeug builds a limited stream, a form parser and its options
    first, and reads the config through the app proxy five times (about 50 µs a POST).

    The result is werkzeug's own: the same parse_qsl call on the same bytes, an empty form for a
    body that is not UTF-8, 400 for a body shorter than its Content-Length.
    """

    @cached_property
    def cookies(self):
        """werkzeug's, from the one HTTP_COOKIE a WSGI server passes (EnvironHeaders.getlist walks
        every key of the environ to find it), parsed once per worker for each header a visitor sends."""
        raw = self.environ.get("HTTP_COOKIE", "")
        if len(raw) > PARSED_COOKIES_MAX_CHARS:
            return parse_cookie(raw, cls=self.dict_storage_class)
        return _parsed_cookies(raw, self.dict_storage_class)

    def _load_form_data(self) -> None:
        if "form" in self.__dict__:
            return
        app = _current_app()
        length = self.content_length
        if (
            app is None
            or length is None
            or length > FAST_FORM_MAX_BYTES
            or length > (self._max_content_length or app.config["MAX_CONTENT_LENGTH"] or length)
            or self.shallow
            or self.mimetype != FORM_MIMETYPE
            or getattr(self, "_cached_data", None) is not None
        ):
            super()._load_form_data()  # werkzeug's path, with its 413 for a body over the limit
            return
        body = _read_exactly(self.environ["wsgi.input"], length)
        try:
            items = parse_qsl(body.decode(), keep_blank_values=True, errors="werkzeug.url_quote")
        except ValueError:  # werkzeug's parser is silent: a body that is not UTF-8 is an empty form
            items = []
        storage = self.parameter_storage_class
        d = self.__dict__
        d["stream"], d["form"], d["files"] = io.BytesIO(b""), storage(items), storage()  # read to the end
        if app.debug:
            from flask.debughelpers import attach_enctype_error_multidict

            attach_enctype_error_multidict(self)  # as flask.Request does in debug mode


# A visitor sends the same Cookie header on page after page (it changes when a cookie is renewed);
# the parsed form is an immutable mapping, so one per header can be shared by its requests.
@functools.lru_cache(maxsize=PARSED_COOKIES_CACHE_SIZE)
def _parsed_cookies(raw: str, storage_class):
    return parse_cookie(raw, cls=storage_class)


def _current_app():
    """The app serving this request in one proxy lookup (flask.Request's properties take five)."""
    try:
        return current_app._get_current_object()
    except RuntimeError:  # a request built outside an app context: werkzeug's path decides
        return None


def _read_exactly(stream, length: int) -> bytes:
    """`length` bytes of the body; a client that sends fewer has gone (werkzeug: 400)."""
    chunks, missing = [], length
    while missing > 0:
        try:
            chunk = stream.read(missing)
        except (OSError, ValueError) as exc:
            raise ClientDisconnected() from exc
        if not chunk:
            raise ClientDisconnected()
        chunks.append(chunk)
        missing -= len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
