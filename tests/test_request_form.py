"""The app's fast urlencoded form parse gives exactly werkzeug's form, errors included."""

from __future__ import annotations

import io

import pytest
from flask import Flask, Request
from werkzeug.exceptions import BadRequest

from quizapp.request_form import FAST_FORM_MAX_BYTES, QuizRequest

BODIES = [
    b"",
    b"csrf_token=abc-DEF_123&choice=1",
    b"choice=1&choice=2&empty=&flag",
    b"a+b=c+d&pct=%41%2B%26%3D&bad=%zz%4&trail=%",
    b"emoji=%F0%9F%98%80&raw=\xc3\xa9t\xc3\xa9",
    b"latin=caf\xe9",  # not UTF-8: werkzeug's silent parser gives an empty form
    b"bad%ff=1&ok=2",  # an undecodable escape: kept quoted by werkzeug's codec handler
    b";semi=1&&x==y",
    b"k=" + b"v" * (FAST_FORM_MAX_BYTES + 10),  # too big for the fast path: werkzeug's own
]


def _form(request_class, body: bytes, *, content_type="application/x-www-form-urlencoded", length=None):
    app = Flask(__name__)
    app.request_class = request_class
    environ = {
        "CONTENT_TYPE": content_type,
        "CONTENT_LENGTH": str(len(body) if length is None else length),
        "wsgi.input": io.BytesIO(body),
    }
    with app.test_request_context("/", method="POST", environ_overrides=environ):
        from flask import request

        return list(request.form.items(multi=True)), list(request.files.items(multi=True))


@pytest.mark.parametrize("body", BODIES)
def test_same_form_as_werkzeug(body):
    assert _form(QuizRequest, body) == _form(Request, body)


def test_other_content_types_take_werkzeugs_path():
    body = b'--x\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--x--\r\n'
    multipart = "multipart/form-data; boundary=x"
    assert _form(QuizRequest, body, content_type=multipart) == ([("a", "1")], [])
    assert _form(QuizRequest, b"a=1", content_type="text/plain") == ([], [])


def test_a_body_shorter_than_its_length_is_a_400_as_in_werkzeug():
    for request_class in (Request, QuizRequest):
        with pytest.raises(BadRequest):
            _form(request_class, b"choice=1", length=40)
