"""Pages rendered once with slots and filled per request are the very pages render_template gives."""

from __future__ import annotations

import pytest
from flask import render_template

from quizapp.admission.service import WaitingAnswer
from quizapp.admission.waiting_page import TEMPLATE as WAITING_TEMPLATE
from quizapp.admission.waiting_page import wait_phrase, waiting_page
from quizapp.errors import ERROR_TEMPLATE, _error_html
from quizapp.quiz.pages import cached_page
from quizapp.quiz.service import QuestionPage
from quizapp.slotted import filled_page, slot


def test_a_page_renders_once_and_its_slots_out_of_place_raise(app):
    renders = []

    def render():
        renders.append(1)
        return f"<p>{slot('a')}, {slot('b')} and {slot('a')}</p>"

    with app.test_request_context("/"):
        for a, b in [("1", "&lt;2&gt;"), ("3", "")]:
            page = filled_page("t.html", key=(), values={"a": a, "b": b}, render=render)
            assert page == f"<p>{a}, {b} and {a}</p>"
        assert len(renders) == 1
        for _ in range(2):  # one page kept at most: the second key is rendered each time
            for i in range(2):
                filled_page("u.html", key=(i,), values={"a": "1", "b": "2"}, render=render, max_pages=1)
        assert len(renders) == 1 + 1 + 2
        bad = [f"{slot('a')}{slot('b')}", "no slot", f"{slot('a')}\x00"]  # unknown, missing, unpaired
        for i, html in enumerate(bad):
            with pytest.raises(RuntimeError, match="slots out of place"):
                filled_page("t.html", key=(i,), values={"a": "1"}, render=lambda html=html: html)


def test_question_pages_are_render_template_with_the_visitors_token(app):
    content = app.extensions["quiz_content"]
    questions = content.questions[:2]
    for root, cookie in [("", "n" * 22), ("/quiz", "m" * 22), ("", "o" * 22)]:  # the third from the cache
        headers = {"Cookie": f"bizmodel.csrf={cookie}"}
        with app.test_request_context("/", base_url=f"http://localhost{root}/", headers=headers):
            for index, question in enumerate(questions):
                for selected in (None, 1):
                    page = QuestionPage(
                        question=question,
                        number=index + 1,
                        total=len(content.questions),
                        previous_id=questions[index - 1].id if index else None,
                        selected=selected,
                    )
                    expected = render_template("quiz/question.html", page=page, error=None)
                    assert 'name="csrf_token" value="' in expected
                    key = (question.id, selected)
                    assert cached_page("quiz/question.html", key, page=page, error=None) == expected


def test_waiting_pages_are_render_template_with_their_numbers(app):
    answers = [WaitingAnswer(ticket=1, position=1, queue_length=1, estimated_wait_s=5, refresh_s=3)]
    answers.append(WaitingAnswer(ticket=9, position=7, queue_length=40, estimated_wait_s=400, refresh_s=10))
    for root in ("", "/quiz"):
        with app.test_request_context("/", base_url=f"http://localhost{root}/"):
            for answer, url in zip(answers, ["/", '/q/x?a=1&b="<2>"'], strict=True):
                expected = render_template(
                    WAITING_TEMPLATE,
                    refresh_s=answer.refresh_s,
                    refresh_url=url,
                    position=answer.position,
                    of_queue=f" of {answer.queue_length}" if answer.queue_length > 1 else "",
                    wait=wait_phrase(answer.estimated_wait_s),
                )
                assert waiting_page(answer, refresh_url=url) == expected


def test_error_pages_are_render_template_with_the_request_id(app):
    with app.test_request_context("/"):
        for request_id in ("req-1", 'req-<2>&"'):
            for status, title, message in [
                (404, "Not found", "No page."),
                (429, "Slow <down>", "Wait & see."),
            ]:
                expected = render_template(
                    ERROR_TEMPLATE, status=status, title=title, message=message, request_id=request_id
                )
                assert _error_html(status, title, message, request_id, None) == expected
