"""The quiz through its pages (test client, CSRF tokens read from the pages): flow, resume, results."""

from __future__ import annotations

import re

import gevent
import pytest

from devstack.quiz_walk import answer_all, csrf_from, submit
from quizapp.ai import service as ai_service


@pytest.fixture
def content(app):
    return app.extensions["quiz_content"]


def _count(pg_conn, sql):
    with pg_conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchone()[0]


def _answers(app, client):
    with client.session_transaction() as sess:
        return app.extensions["quiz_content"].unpack_answers(sess.get("quiz", {}).get("a", ""))


def test_landing_is_plain_html_with_a_start_form(client, content):
    page = client.get("/")
    assert page.status_code == 200
    assert b'<form method="post" action="/start">' in page.data
    assert b'name="csrf_token"' in page.data and b"<script" not in page.data
    assert f"Answer {len(content.questions)} short questions".encode() in page.data


def test_one_question_a_page_with_progress_back_and_forward(app, client, content):
    first, second, third = content.questions[:3]
    response = client.post("/start", data={"csrf_token": csrf_from(client.get("/"))})
    assert response.status_code == 303 and response.headers["Location"].endswith(f"/q/{first.id}")
    page = client.get(f"/q/{first.id}")
    total = len(content.questions)
    assert f"Question 1 of {total}".encode() in page.data
    assert b"<fieldset" in page.data and b"<legend>" in page.data
    assert re.search(
        rb'<label for="choice-0"><input type="radio" id="choice-0" name="choice"',
        page.data,
    )
    response = client.post(f"/q/{first.id}", data={"csrf_token": csrf_from(page), "choice": "2"})
    assert response.headers["Location"].endswith(f"/q/{second.id}")
    page = client.get(f"/q/{second.id}")
    assert f"Question 2 of {total}".encode() in page.data
    assert f'href="/q/{first.id}" rel="prev"'.encode() in page.data
    client.post(f"/q/{second.id}", data={"csrf_token": csrf_from(page), "choice": "1"})
    # Back: the earlier answer is preselected; changing it goes on to the first unanswered question.
    page = client.get(f"/q/{first.id}")
    assert b'value="2" required checked' in page.data
    response = client.post(f"/q/{first.id}", data={"csrf_token": csrf_from(page), "choice": "3"})
    assert response.headers["Location"].endswith(f"/q/{third.id}")
    assert _answers(app, client) == {first.id: 3, second.id: 1}


def test_answers_survive_closing_the_tab(app, client, content):
    client.post("/start", data={"csrf_token": csrf_from(client.get("/"))})
    page = client.get(f"/q/{content.questions[0].id}")
    client.post(
        f"/q/{content.questions[0].id}",
        data={"csrf_token": csrf_from(page), "choice": "1"},
    )
    cookie = client.get_cookie("bizmodel.sid").value
    reopened = app.test_client()
    reopened.set_cookie("bizmodel.sid", cookie)
    landing = reopened.get("/")
    assert b"Continue where you left off (1 of" in landing.data
    assert f'href="/q/{content.questions[1].id}"'.encode() in landing.data


def test_full_walk_gives_a_result_with_the_ai_section(app, client, content, monkeypatch, pg_conn):
    calls = []
    real = ai_service.request_analysis

    def spy(**kwargs):
        calls.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(ai_service, "request_analysis", spy)
    review = answer_all(client, content)
    assert review.status_code == 200 and b"Not answered" not in review.data
    response = submit(client)
    assert response.status_code == 303
    public_id = response.headers["Location"].rsplit("/", 1)[-1]
    page = client.get(f"/r/{public_id}")
    assert page.status_code == 200
    assert b'id="ai-analysis"' in page.data and b"Your best fit" in page.data
    (call,) = calls
    assert call["subject_id"] == public_id and call["paid"] is False
    sid = client.get_cookie("bizmodel.sid").value
    assert call["user_key"] and sid not in call["user_key"]
    top = call["prompt_inputs"]["top_models"]
    assert len(top) == 3
    assert set(top[0]) == {
        "id",
        "name",
        "score",
        "reasons",
        "description",
        "strengths",
        "risks",
        "first_steps",
    }
    assert call["prompt_inputs"]["answers"] == _answers(app, client)
    row_top = _count(pg_conn, "SELECT top_model FROM quiz_attempts")
    assert row_top == top[0]["id"]


def test_double_submit_and_refresh_record_one_attempt(app, client, content, pg_conn):
    answer_all(client, content)
    token = csrf_from(client.get("/review"))
    cookie = client.get_cookie("bizmodel.sid").value
    nonce = client.get_cookie("bizmodel.csrf").value  # the same browser: both cookies
    others = []
    for _ in range(6):
        other = app.test_client()
        other.set_cookie("bizmodel.sid", cookie)
        other.set_cookie("bizmodel.csrf", nonce)
        others.append(other)
    jobs = [gevent.spawn(c.post, "/submit", data={"csrf_token": token}) for c in [client, *others]]
    gevent.joinall(jobs, raise_error=True)
    locations = {job.value.headers["Location"] for job in jobs}
    assert [job.value.status_code for job in jobs] == [303] * 7 and len(locations) == 1
    assert client.post("/submit", data={"csrf_token": token}).headers["Location"] in locations
    assert _count(pg_conn, "SELECT count(*) FROM quiz_attempts") == 1
    assert _count(pg_conn, "SELECT sum(remaining) FROM quiz_quota") == 19


def test_daily_quota_refuses_the_next_result(make_app, pg_conn):
    app = make_app(QUIZ_DAILY_QUOTA="2", RATELIMIT_ENABLED="false")  # the quota, not the page limit
    client = app.test_client()
    content = app.extensions["quiz_content"]
    for _ in range(2):
        answer_all(client, content)
        assert submit(client).status_code == 303
    answer_all(client, content)
    response = submit(client)
    assert response.status_code == 429 and b"limit of 2 results" in response.data
    assert response.headers["Retry-After"]
    assert _count(pg_conn, "SELECT count(*) FROM quiz_attempts") == 2


def test_new_attempt_after_start_again(client, content, pg_conn):
    answer_all(client, content)
    first = submit(client).headers["Location"]
    landing = client.get("/")
    assert b"See your last result" in landing.data
    answer_all(
        client,
        content,
        choose=lambda q: len(q.valid_choices()) - 1 if q.kind == "choice" else 5,
    )
    second = submit(client).headers["Location"]
    assert first != second
    assert _count(pg_conn, "SELECT count(*) FROM quiz_attempts") == 2


def test_unknown_result_is_404_and_unpaid_report_is_refused(client, content):
    assert client.get("/r/does-not-exist").status_code == 404
    assert client.get("/r/" + "x" * 200).status_code == 400  # longer than any id: malformed
    answer_all(client, content)
    location = submit(client).headers["Location"]
    assert client.get(location + "/report").status_code == 403


def test_email_capture_upserts_and_queues(client, content, pg_conn):
    answer_all(client, content)
    result = submit(client).headers["Location"]
    page = client.get(result)
    response = client.post(
        result + "/email",
        data={"csrf_token": csrf_from(page), "email": "ada@example.org"},
    )
    assert response.status_code == 303
    assert b"we have sent a confirmation link" in client.get(result).data
    answer_all(client, content)
    second = submit(client).headers["Location"]
    page = client.get(second)
    client.post(
        second + "/email",
        data={"csrf_token": csrf_from(page), "email": "ADA@example.org"},
    )
    assert _count(pg_conn, "SELECT count(*) FROM email_subscribers") == 1
    assert _count(pg_conn, "SELECT count(*) FROM email_outbox") == 2
    latest = _count(pg_conn, "SELECT max(id) FROM quiz_attempts")
    assert _count(pg_conn, "SELECT last_attempt_id FROM email_subscribers") == latest


@pytest.mark.parametrize("email", ["", "not-an-email", "a@b", "x" * 300 + "@example.org"])
def test_invalid_email_rerenders_result_with_400(client, content, pg_conn, email):
    answer_all(client, content)
    result = submit(client).headers["Location"]
    page = client.get(result)
    response = client.post(result + "/email", data={"csrf_token": csrf_from(page), "email": email})
    assert response.status_code == 400
    assert b"Please enter a valid email address." in response.data and b"Your best fit" in response.data
    assert _count(pg_conn, "SELECT count(*) FROM email_subscribers") == 0


def test_changing_an_answer_after_submit_makes_a_new_attempt(client, content, pg_conn):
    answer_all(client, content)
    first = submit(client).headers["Location"]
    question = content.questions[0]
    page = client.get(f"/q/{question.id}")
    client.post(f"/q/{question.id}", data={"csrf_token": csrf_from(page), "choice": "3"})
    second = submit(client).headers["Location"]
    assert second != first and submit(client).headers["Location"] == second
    assert _count(pg_conn, "SELECT count(*) FROM quiz_attempts") == 2


def test_answers_are_packed_compactly_and_survive_a_content_change(app, content):
    answers = {q.id: (3 if q.kind == "scale" else 1) for q in content.questions[:5]}
    packed = content.pack_answers(answers)
    assert len(packed) == len(content.fingerprint) + 1 + len(content.questions)
    assert content.unpack_answers(packed) == answers
    # Packed for another question list: never misread as this one's answers.
    assert content.unpack_answers("zzzz:" + packed.split(":", 1)[1]) == {}
    assert content.unpack_answers("") == {}
