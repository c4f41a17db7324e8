"""Random requests to every route of the app (from app.url_map): never a 500, always the headers."""

from __future__ import annotations

import json
import time

from hypothesis import HealthCheck, given
from hypothesis import strategies as st
from werkzeug.routing import BuildError, IntegerConverter, UUIDConverter
from werkzeug.security import generate_password_hash

from tests.support.admin_session import forge_admin_session
from tests.support.fuzzing import fuzz_settings

METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")
CONTENT_TYPES = (
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=fuzzboundary",
    "multipart/form-data",
    "application/json",
    "text/plain",
    "application/octet-stream",
)
FUZZ_SETTINGS = fuzz_settings(150, HealthCheck.data_too_large)
small_text = st.text(max_size=40)
# Field values: short unicode, control characters, or huge (over the 500 KB form-field limit).
field_value = st.one_of(
    st.text(max_size=200),
    st.sampled_from(["", "0", "-1", "1e309", "NaN", "null", "[]", "{}", "../../etc/passwd", "\x00\r\n"]),
    st.integers(min_value=1, max_value=600_000).map(lambda n: "é" * n),
)

# Path ids: well-formed ones (unknown: 404) and odd ones (400): Unicode digits, controls, over-long.
path_id_value = st.one_of(
    st.text(
        alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-", min_size=1, max_size=64
    ),
    st.characters(categories=["Nd", "No"]).filter(lambda c: not c.isascii()),
    st.sampled_from(["\x00", "a\x00", "\x7f", "\u2028", "\ufffd", "²"]),
    st.integers(min_value=65, max_value=2000).map(lambda n: "x" * n),
)


def _rules(app, skip=()):
    rules = [rule for rule in app.url_map.iter_rules() if rule.endpoint not in skip]
    return sorted(rules, key=lambda rule: rule.rule)


@st.composite
def fuzz_request(draw, app, skip=()):
    rule = draw(st.sampled_from(_rules(app, skip)))
    values = {}
    for name in rule.arguments:
        converter = rule._converters[name]
        if isinstance(converter, IntegerConverter):
            values[name] = draw(st.integers(min_value=0, max_value=2**63))
        elif isinstance(converter, UUIDConverter):
            values[name] = draw(st.uuids())
        else:
            values[name] = draw(st.text(min_size=1, max_size=60) | path_id_value)
    try:
        path = app.url_map.bind("localhost").build(rule.endpoint, values)
    except BuildError:
        path = rule.rule
    method = draw(st.sampled_from(sorted(rule.methods)) | st.sampled_from(METHODS))
    query = draw(st.dictionaries(small_text, small_text, max_size=4))
    body_kind = draw(st.sampled_from(["form", "bytes", "json", "none"]))
    kwargs = {
        "query_string": query,
        "headers": {"Accept": draw(st.sampled_from(["text/html", "application/json", "*/*"]))},
    }
    if body_kind == "form":
        kwargs["data"] = draw(st.dictionaries(small_text, field_value, max_size=6))
    elif body_kind == "bytes":
        kwargs["data"] = draw(st.binary(max_size=4000))
        kwargs["content_type"] = draw(
            st.sampled_from(CONTENT_TYPES) | st.text(max_size=30).filter(str.isprintable)
        )
    elif body_kind == "json":
        kwargs["data"] = json.dumps(
            draw(
                st.recursive(
                    st.none() | st.booleans() | st.floats() | small_text,
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(small_text, c, max_size=4),
                    max_leaves=12,
                )
            )
        )
        kwargs["content_type"] = "application/json"
    return method, path, kwargs


def _fuzz(app, client, skip=()):
    statuses = {}

    @FUZZ_SETTINGS
    @given(fuzz_request(app, skip))
    def run(request):
        method, path, kwargs = request
        response = client.open(path, method=method, **kwargs)
        assert response.status_code != 500, (method, path, response.data[:300])
        assert response.status_code < 600
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Request-ID"]
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    run()
    return statuses


def test_fuzz_every_route_as_an_admin_without_csrf_or_limits(make_app):
    """The deepest reach: forms get parsed by the views themselves, admin pages open."""
    app = make_app(
        CSRF_ENABLED="false",
        RATELIMIT_ENABLED="false",
        ADMIN_PASSWORD_HASH=generate_password_hash("fuzz-password-123"),
    )
    client = app.test_client()
    forge_admin_session(client, seen_at=time.time() + 3600)
    statuses = _fuzz(app, client, skip=("admin_auth.logout",))  # stay an admin throughout
    assert sum(statuses.values()) >= 100


def test_fuzz_every_route_as_a_stranger_with_every_protection_on(make_app):
    app = make_app()
    statuses = _fuzz(app, app.test_client())
    assert sum(statuses.values()) >= 100
