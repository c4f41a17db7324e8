"""The app's Response class: werkzeug's, without checking every header a second time on the way out."""

from __future__ import annotations

import functools

from flask import Response
from werkzeug.datastructures import Headers
from werkzeug.urls import iri_to_uri


class QuizResponse(Response):
    """flask.Response, but the headers handed to the server are copied as they are.

    werkzeug's get_wsgi_headers copies them with Headers(self.headers), which checks each name and
    value for newlines again: three calls a header, ~10 a page. Every entry was checked when it was
    set (or is one of the app's constants, appended by the pipeline), so the copy is the same list.
    The rest is werkzeug's, for the statuses the app sends; the others take werkzeug's own path.
    """

    def get_wsgi_headers(self, environ) -> Headers:
        status = self.status_code
        if status < 200 or status in (204, 304) or self.autocorrect_location_header:
            return super().get_wsgi_headers(environ)
        headers = Headers()
        headers._list = list(self.headers._list)  # each entry was checked on the way in
        location = content_location = content_length = None
        for key, value in headers._list:
            ikey = key.lower()
            if ikey == "location":
                location = value
            elif ikey == "content-location":
                content_location = value
            elif ikey == "content-length":
                content_length = value
        if location is not None:
            headers["Location"] = _uri(location)
        if content_location is not None:
            headers["Content-Location"] = _uri(content_location)
        if self.automatically_set_content_length and self.is_sequence and content_length is None:
            headers["Content-Length"] = str(sum(len(x) for x in self.iter_encoded()))
        return headers


def _uri(location: str) -> str:
    """iri_to_uri, remembered for a plain path (the app's redirects go to a few dozen pages); a
    location with a query (a report link's key, a checkout id) is quoted each time, never kept."""
    return iri_to_uri(location) if "?" in location else _path_uri(location)


@functools.lru_cache(maxsize=1024)
def _path_uri(location: str) -> str:
    return iri_to_uri(location)
