"""Fragments rendered once per worker (model cards, fixed links) are the very HTML the templates give."""

from __future__ import annotations

from flask import render_template, url_for

from quizapp.links import template_url_for
from quizapp.quiz.pages import MODEL_TEMPLATE, model_card


def _ranked(content, score, reasons):
    return [{**m.as_dict(), "score": score, "reasons": list(reasons)} for m in content.models]


def test_model_cards_match_the_template_for_every_model_and_layout(app):
    content = app.extensions["quiz_content"]
    layouts = [(True, 2, True), (False, 3, False), (True, 2, False)]
    cases = [(73, ['You like <b>people</b> & "plans"', "Second"]), (0, ["Only one"]), (100, [])]
    with app.test_request_context("/r/x", base_url="http://localhost/quiz/"):
        for score, reasons in cases:  # the second and third reuse the first one's cached HTML
            for m in _ranked(content, score, reasons):
                for detail, level, hide_name in layouts:
                    expected = render_template(
                        MODEL_TEMPLATE, m=m, detail=detail, level=level, hide_name=hide_name
                    )
                    assert model_card(m, detail=detail, level=level, hide_name=hide_name) == expected


def test_fixed_links_are_url_for_under_each_script_root(app):
    calls = [("pages.favicon", {}), ("static", {"filename": "css/site.css"}), ("quiz.landing", {})]
    for root in ("", "/quiz", ""):
        with app.test_request_context("/", base_url=f"http://localhost{root}/"):
            for endpoint, values in calls:
                assert template_url_for(endpoint, **values) == url_for(endpoint, **values)
            assert template_url_for("quiz.result", public_id="abc") == url_for("quiz.result", public_id="abc")
            assert template_url_for("quiz.landing").startswith(root + "/")
