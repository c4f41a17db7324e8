"""Pure scoring and content validation: scores in range, a top model with reasons, deterministic."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from quizapp.config import Config, ConfigError
from quizapp.quiz.data import load_content
from quizapp.quiz.scoring import (
    NEUTRAL_REASON,
    _contributions,
    _score_ranges,
    missing_questions,
    score_answers,
    validate_answer,
)

CONTENT_PATH = Config.QUIZ_CONTENT_PATH
CONTENT = load_content(CONTENT_PATH)


def complete_answers():
    return st.fixed_dictionaries({q.id: st.sampled_from(list(q.valid_choices())) for q in CONTENT.questions})


def test_shipped_content_has_enough_questions_and_models():
    assert len(CONTENT.questions) >= 12 and len(CONTENT.models) >= 8
    assert {q.kind for q in CONTENT.questions} == {"choice", "scale"}
    for model in CONTENT.models:
        assert model.description and model.strengths and model.risks and model.first_steps


@settings(max_examples=200, deadline=None, database=None)
@given(complete_answers())
def test_any_complete_answer_set_scores_every_model_in_range_with_reasons(answers):
    scores = score_answers(CONTENT, answers)
    assert [s.model_id for s in scores] != []
    assert sorted(s.model_id for s in scores) == sorted(m.id for m in CONTENT.models)
    assert all(0 <= s.score <= 100 for s in scores)
    assert [s.score for s in scores] == sorted((s.score for s in scores), reverse=True)
    top = scores[0]
    assert top.score == max(s.score for s in scores)
    assert top.reasons and all(isinstance(r, str) and r for r in top.reasons)
    assert score_answers(CONTENT, dict(reversed(list(answers.items())))) == scores
    assert missing_questions(CONTENT, answers) == []


@settings(max_examples=100, deadline=None, database=None)
@given(complete_answers())
def test_reasons_name_the_answers_that_moved_the_score(answers):
    for entry in score_answers(CONTENT, answers):
        for reason in entry.reasons:
            if reason != NEUTRAL_REASON:
                assert any(reason.startswith(q.text) for q in CONTENT.questions)
                assert "(+" in reason or "(-" in reason


def test_extreme_answers_reach_the_ends_of_the_scale():
    best_for_franchise = {}
    for question in CONTENT.questions:
        choices = list(question.valid_choices())
        best_for_franchise[question.id] = max(
            choices, key=lambda c: _contributions(question, c).get("franchise", 0)
        )
    scores = {s.model_id: s.score for s in score_answers(CONTENT, best_for_franchise)}
    assert scores["franchise"] == 100
    assert score_answers(CONTENT, best_for_franchise)[0].model_id == "franchise"


def _brute_force_ranges(content) -> dict:
    ranges = {}
    for model in content.models:
        lows, highs = [], []
        for question in content.questions:
            values = [_contributions(question, c).get(model.id, 0.0) for c in question.valid_choices()]
            lows.append(min(values))
            highs.append(max(values))
        ranges[model.id] = (sum(lows), sum(highs))
    return ranges


def test_each_content_is_scored_with_its_own_ranges(tmp_path):
    def triple_scale_weights(raw):
        for question in raw["questions"]:
            if question["kind"] == "scale":
                question["weights"] = {m: w * 3 for m, w in question["weights"].items()}

    other = load_content(_broken_copy(tmp_path, triple_scale_weights))
    assert _score_ranges(CONTENT) == _brute_force_ranges(CONTENT)
    assert _score_ranges(other) == _brute_force_ranges(other) != _score_ranges(CONTENT)
    assert _score_ranges(CONTENT) == _brute_force_ranges(CONTENT)  # the cache kept both apart


@pytest.mark.parametrize(
    ("question_index", "raw", "expected"),
    [
        (0, "0", 0),
        (0, "3", 3),
        (0, "4", None),
        (0, "-1", None),
        (0, "x", None),
        (0, "", None),
        (2, "1", 1),
        (2, "5", 5),
        (2, "0", None),
        (2, "6", None),
        (2, "2.5", None),
        (2, True, None),
    ],
)
def test_validate_answer(question_index, raw, expected):
    assert validate_answer(CONTENT.questions[question_index], raw) == expected


def _broken_copy(tmp_path: Path, mutate) -> Path:
    raw = yaml.safe_load(Path(CONTENT_PATH).read_text())
    mutate(raw)
    path = tmp_path / "content.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda raw: raw["models"][2].pop("risks"), "models[2].risks"),
        (lambda raw: raw["questions"][1].update(kind="slider"), "questions[1].kind"),
        (
            lambda raw: raw["questions"][0]["options"][1]["weights"].update(unicorn=2),
            "weights.unicorn",
        ),
        (
            lambda raw: raw["questions"][2]["weights"].update(saas="lots"),
            "questions[2].weights.saas",
        ),
        (lambda raw: raw.update(questions=raw["questions"][:5]), "questions"),
        (
            lambda raw: raw["questions"][3].update(id=raw["questions"][0]["id"]),
            "questions[3].id",
        ),
    ],
)
def test_broken_content_names_file_and_field(tmp_path, mutate, field):
    path = _broken_copy(tmp_path, mutate)
    with pytest.raises(ConfigError) as caught:
        load_content(path)
    assert str(path) in str(caught.value) and field in str(caught.value)


def test_broken_content_stops_app_start_up(tmp_path, make_app):
    path = tmp_path / "content.yaml"
    path.write_text("models: [unterminated\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        make_app(QUIZ_CONTENT_PATH=str(path))
    with pytest.raises(ConfigError, match="cannot be read"):
        make_app(QUIZ_CONTENT_PATH=str(tmp_path / "missing.yaml"))
