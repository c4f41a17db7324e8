"""Bad input never costs the answers already given: a 400 page re-rendered with a clear message."""

from __future__ import annotations

import pytest

from devstack.quiz_walk import csrf_from, submit


@pytest.fixture
def started(app, client):
    """A quiz with the first two questions answered; returns (client, content, answers)."""
    content = app.extensions["quiz_content"]
    client.post("/start", data={"csrf_token": csrf_from(client.get("/"))})
    for question in content.questions[:2]:
        page = client.get(f"/q/{question.id}")
        client.post(f"/q/{question.id}", data={"csrf_token": csrf_from(page), "choice": "1"})
    return client, content, _answers(client)


def _answers(client):
    with client.session_transaction() as sess:
        return client.application.extensions["quiz_content"].unpack_answers(sess["quiz"]["a"])


def _token(client, content):
    return csrf_from(client.get(f"/q/{content.questions[0].id}"))


SCALE_INDEX = 2  # the third question is a 1-5 scale


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({}, b"Please choose an answer"),
        ({"choice": "9"}, b"not one of the choices"),
        ({"choice": "-1"}, b"not one of the choices"),
        ({"choice": "abc"}, b"not one of the choices"),
        ({"choice": ["1", "2"]}, b"not one of the choices"),
        ({"choice": "0"}, b"not one of the choices"),
        ({"choice": "²"}, b"not one of the choices"),  # isdigit() says yes, int() says no
        ({"choice": "٣"}, b"not one of the choices"),
        ({"choice": "1\x00"}, b"not one of the choices"),
        ({"choice": "1", "pad": "x" * 5000}, b"larger than an answer can be"),
    ],
)
def test_bad_answer_is_400_and_keeps_answers(started, form, message):
    client, content, before = started
    question = content.questions[SCALE_INDEX]
    assert question.kind == "scale"
    response = client.post(f"/q/{question.id}", data={"csrf_token": _token(client, content), **form})
    assert response.status_code == 400
    assert message in response.data and b'role="alert"' in response.data
    assert f"Question {SCALE_INDEX + 1} of".encode() in response.data  # the same page, re-rendered
    assert _answers(client) == before


def test_unknown_question_id_is_404_and_shows_next_unanswered(started):
    client, content, before = started
    for method in (client.get, client.post):
        kwargs = (
            {"data": {"csrf_token": _token(client, content), "choice": "1"}} if method == client.post else {}
        )
        response = method("/q/no_such_question", **kwargs)
        assert response.status_code == 404
        assert b"That question does not exist" in response.data
        assert f"Question {len(before) + 1} of".encode() in response.data
    assert _answers(client) == before


def test_submit_with_missing_answers_is_400_on_the_review_page(started):
    client, _content, before = started
    response = submit(client)
    assert response.status_code == 400
    assert b"Please answer every question first (missing: 3, 4," in response.data
    assert _answers(client) == before


def test_submit_without_starting_is_400(client):
    response = submit(client)
    assert response.status_code == 400 and b"start the quiz" in response.data


def test_missing_or_wrong_csrf_token_is_400_not_500(started):
    client, content, before = started
    question = content.questions[SCALE_INDEX]
    for data in ({"choice": "1"}, {"choice": "1", "csrf_token": "forged"}):
        response = client.post(f"/q/{question.id}", data=data)
        assert response.status_code == 400
    assert _answers(client) == before


def test_malformed_body_is_400_not_500(started):
    client, content, before = started
    question = content.questions[SCALE_INDEX]
    token = _token(client, content)
    response = client.post(
        f"/q/{question.id}",
        data=b"\xff\xfe%%%&&&=" + token.encode(),
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 400
    response = client.post(
        f"/q/{question.id}",
        data=b"--broken\r\nnot multipart",
        content_type="multipart/form-data; boundary=broken",
        headers={"X-CSRFToken": token},
    )
    assert response.status_code == 400
    assert _answers(client) == before


def test_body_over_the_app_limit_is_refused_without_losing_answers(make_app):
    app = make_app(MAX_CONTENT_LENGTH="2048")
    client = app.test_client()
    content = app.extensions["quiz_content"]
    client.post("/start", data={"csrf_token": csrf_from(client.get("/"))})
    page = client.get(f"/q/{content.questions[0].id}")
    client.post(
        f"/q/{content.questions[0].id}",
        data={"csrf_token": csrf_from(page), "choice": "1"},
    )
    data = {"csrf_token": csrf_from(page), "choice": "1", "pad": "x" * 3000}
    response = client.post(f"/q/{content.questions[1].id}", data=data)
    assert response.status_code == 413 and b"larger than we accept (2 KB at most)" in response.data
    assert _answers(client) == {content.questions[0].id: 1}
