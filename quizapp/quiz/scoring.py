"""Pure scoring: answers -> a 0-100 fit score per business model, with the answers that moved it."""

from __future__ import annotations

from dataclasses import dataclass

from ..validation import choice as parse_choice
from .data import SCALE_MAX, SCALE_MIN, AsPlainDict, Content, Question

NEUTRAL_REASON = "None of your answers pointed strongly toward or away from this model."
MAX_REASONS = 5


@dataclass(frozen=True)
class ModelScore(AsPlainDict):
    model_id: str
    score: int
    reasons: tuple


def _contributions(question: Question, choice: int) -> dict:
    """What one answer adds to each model's raw score."""
    if question.kind == "scale":
        factor = (choice - (SCALE_MIN + SCALE_MAX) / 2) / ((SCALE_MAX - SCALE_MIN) / 2)
        return {mid: weight * factor for mid, weight in question.weights.items()}
    return dict(question.options[choice].weights)


def _bounds(question: Question, model_id: str) -> tuple[float, float]:
    """The lowest and highest contribution any answer to this question can give a model."""
    values = [_contributions(question, c).get(model_id, 0.0) for c in question.valid_choices()]
    return min(values), max(values)


def _reason(question: Question, choice: int, delta: float) -> str:
    direction = "+" if delta > 0 else "-"
    return f"{question.text} You answered “{question.choice_label(choice)}” ({direction}{abs(delta):g})"


def score_answers(content: Content, answers: dict) -> list[ModelScore]:
    """Score every model, best first (ties keep content order). Answers must be complete and valid."""
    results = []
    for model in content.models:
        raw = low = high = 0.0
        moved = []
        for position, question in enumerate(content.questions):
            qlow, qhigh = _bounds(question, model.id)
            low, high = low + qlow, high + qhigh
            delta = _contributions(question, answers[question.id]).get(model.id, 0.0)
            raw += delta
            if delta:
                moved.append(
                    (
                        -abs(delta),
                        position,
                        _reason(question, answers[question.id], delta),
                    )
                )
        score = 50 if high == low else round(100 * (raw - low) / (high - low))
        reasons = tuple(text for _, _, text in sorted(moved)[:MAX_REASONS]) or (NEUTRAL_REASON,)
        results.append(ModelScore(model_id=model.id, score=max(0, min(100, score)), reasons=reasons))
    order = {m.id: i for i, m in enumerate(content.models)}
    return sorted(results, key=lambda s: (-s.score, order[s.model_id]))


def validate_answer(question: Question, raw_choice) -> int | None:
    """The choice as an int if it is valid for the question, else None."""
    if isinstance(raw_choice, bool):
        return None
    if isinstance(raw_choice, str):
        raw_choice = parse_choice(raw_choice)
    if not isinstance(raw_choice, int) or raw_choice not in question.valid_choices():
        return None
    return raw_choice


def missing_questions(content: Content, answers: dict) -> list[str]:
    return [q.id for q in content.questions if validate_answer(q, answers.get(q.id)) is None]
