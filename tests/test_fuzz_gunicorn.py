"""Odd values for every path parameter and form field, sent byte for byte straight to gunicorn.

Odd (NUL and control characters, lone surrogates, Unicode digits, over-long) is a 400; a well-formed
unknown id is a 404; nothing is a 500, and the cluster health score does not drop for them.
"""

from __future__ import annotations

import re
import time

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.security import generate_password_hash

from devstack.processes import ROOT
from devstack.servers import Gunicorn
from quizapp.quiz.data import load_content
from quizapp.quiz.repository import insert_attempt
from quizapp.quiz.scoring import score_answers
from quizapp.validation import CONVERTERS, InvalidInput
from tests.support.fuzzing import fuzz_settings
from tests.support.raw_http import percent_encode, raw_request

pytestmark = [pytest.mark.integration]

RAW_SETTINGS = fuzz_settings(100, HealthCheck.function_scoped_fixture)
ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
WELL_FORMED = re.compile(r"[A-Za-z0-9_-]{1,64}")
CONTENT = load_content(str(ROOT / "quizapp" / "quiz" / "content.yaml"))
QUESTION_IDS = {q.id for q in CONTENT.questions}

# -- strategies: the odd values the issue lists --------------------------------------------------
unicode_digits = st.characters(categories=["Nd", "No", "Nl"]).filter(lambda c: not c.isascii())
control_chars = st.characters(max_codepoint=0x1F) | st.sampled_from(["\x7f", "\x85", "\x9f", "\u2028"])
lone_surrogates = st.characters(categories=["Cs"])
odd_char = st.one_of(unicode_digits, control_chars, lone_surrogates, st.sampled_from("é ü<>'\"%.~"))
id_text = st.text(alphabet=ID_CHARS, max_size=12)
odd_value = st.one_of(
    st.builds(lambda a, odd, b: a + odd + b, id_text, odd_char, id_text),
    st.integers(min_value=300, max_value=900).map(lambda n: "A" * n),  # longer than any id
    st.sampled_from(["\x00", "²", "¹", "٣", "\ud800", "a\x00b", "1\x00", ".."]),
)
# A password may hold any printable character ('²', even a literal '%ED%A0%80'): only control
# characters and over-long values are odd (raw surrogate bytes drop the field: empty, also a 400).
odd_password = st.one_of(
    st.builds(lambda a, odd, b: a + odd + b, id_text, control_chars, id_text),
    st.sampled_from(["", "\x00"]),
    st.integers(min_value=300, max_value=900).map(lambda n: "p" * n),
)
well_formed_id = st.text(alphabet=ID_CHARS, min_size=1, max_size=64)


def _path_rules():
    """Every rule with an id path parameter (static files aside), from the real URL map."""
    from wsgi import app

    rules = []
    for rule in app.url_map.iter_rules():
        names = [name for name, conv in rule._converters.items() if type(conv) in CONVERTERS.values()]
        if names:
            methods = sorted(rule.methods - {"HEAD", "OPTIONS"})
            rules.extend((rule.rule, method) for method in methods)
    return sorted(rules)


@pytest.fixture(scope="module")
def instance(tmp_path_factory):
    env = {
        "QUIZAPP_ENV": "test",
        "CSRF_ENABLED": "false",  # reach the views' own parsing
        "RATELIMIT_ENABLED": "false",
        "HEARTBEAT_SECONDS": "0.5",
        "ADMIN_PASSWORD_HASH": generate_password_hash("fuzz-password-123", method="pbkdf2:sha256:1000"),
    }
    server = Gunicorn("wsgi:app", workers=1, env=env, log_dir=tmp_path_factory.mktemp("fuzz")).start()
    yield server
    server.stop()


def _target(rule: str, value: str) -> bytes:
    return re.sub(r"<[^>]+>", lambda _m: percent_encode(value), rule).encode()


def _expected_for_id(rule: str, value: str) -> int:
    converter = CONVERTERS[re.search(r"<(\w+):", rule).group(1)]
    try:
        converter.parse(value)
    except InvalidInput:
        return 400
    if rule.startswith("/q/") and value in QUESTION_IDS:
        return -1  # a real question: any non-5xx answer
    return 404


FORMS = {
    "/r/<public_id:public_id>/email": b"email=someone%40example.com",
    "/q/<question_id:question_id>": b"choice=1",
}


def _send(port, method, target, body=b""):
    headers = {"Content-Type": "application/x-www-form-urlencoded"} if method == "POST" else {}
    return raw_request(port, method, target, headers=headers, body=body)


def test_path_rules_cover_every_id_parameter():
    rules = {rule for rule, _method in _path_rules()}
    assert {
        "/q/<question_id:question_id>",
        "/r/<public_id:public_id>",
        "/r/<public_id:public_id>/email",
        "/r/<public_id:public_id>/report",
        "/pay/test/<checkout_id:session_id>",
        "/pay/return/<public_id:public_id>",
        "/api/analysis/<public_id:subject_id>",
        "/pay/receipt/<public_id:public_id>",
        "/mail/confirm/<signed_token:token>",
        "/mail/unsubscribe/<signed_token:token>",
    } <= rules


def test_odd_path_ids_are_400_and_unknown_ones_404_straight_from_gunicorn(instance):
    rules = _path_rules()
    seen = []

    @RAW_SETTINGS
    @given(st.sampled_from(rules), st.one_of(odd_value, well_formed_id))
    def run(rule_method, value):
        rule, method = rule_method
        status, body = _send(instance.port, method, _target(rule, value), FORMS.get(rule, b""))
        expected = _expected_for_id(rule, value)
        assert status < 500, (rule, method, value, body[:300])
        if expected > 0:
            assert status == expected, (rule, method, value, status, body[:300])
        seen.append(status)

    run()
    # Raw bytes a browser would have encoded: gunicorn or the app says 400, never 500.
    for raw in (b"/r/\xc2\xb2", b"/r/a\xed\xa0\x80", b"/pay/test/\xff", b"/q/\x00"):
        assert _send(instance.port, "GET", raw)[0] == 400, raw
    assert len(seen) >= 100 and 400 in seen and 404 in seen
    _assert_health_unhurt(instance, requests_at_least=len(seen))


@pytest.mark.parametrize(
    ("path", "field", "values"),
    [
        (f"/q/{CONTENT.questions[2].id}", "choice", odd_value),
        ("/pay/checkout", "public_id", odd_value),
        ("/r/fuzz-result-1/email", "email", odd_value),
        ("/admin/login", "password", odd_password),
    ],
)
def test_odd_form_fields_are_400_straight_from_gunicorn(instance, pg_conn, path, field, values):
    _insert_result(pg_conn, "fuzz-result-1")  # the email form re-renders a real result page

    @settings(RAW_SETTINGS, max_examples=40)
    @given(values, st.booleans())
    def run(value, raw_bytes):
        encoded = value.encode("utf-8", "surrogatepass") if raw_bytes else percent_encode(value).encode()
        status, page = _send(instance.port, "POST", path.encode(), field.encode() + b"=" + encoded)
        assert status == 400, (path, value, raw_bytes, status, page[:300])

    run()
    # Invalid UTF-8 (a lone surrogate's bytes) drops the field when the form is decoded: a 400 too.
    assert _send(instance.port, "POST", path.encode(), field.encode() + b"=a\xed\xa0\x80")[0] == 400


def _insert_result(pg_conn, public_id: str) -> None:
    answers = {q.id: q.valid_choices()[0] for q in CONTENT.questions}
    scores = [s.as_dict() for s in score_answers(CONTENT, answers)]
    with pg_conn.cursor() as cur:
        insert_attempt(
            cur,
            attempt_key=public_id,
            public_id=public_id,
            answers=answers,
            scores=scores,
            top_model=scores[0]["model_id"],
            started_at=None,
            owner_key="fuzz-owner",
        )


def _assert_health_unhurt(instance, requests_at_least: int) -> None:
    """The fuzzed 400s and 404s cost no health points: the heartbeats show them, with no 5xx."""
    deadline = time.monotonic() + 30
    while True:
        report = requests.get(instance.url + "/api/health/detailed", timeout=10).json()
        counted = sum(w["http"]["errors"]["requests"] for w in report["workers"])
        if counted >= requests_at_least or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert counted >= requests_at_least
    assert sum(w["http"]["errors"]["5xx"] for w in report["workers"]) == 0
    assert not [f for f in report["findings"] if "5xx" in f], report["findings"]
