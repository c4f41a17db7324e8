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


_RANGES: dict[int, tuple[Content, dict]] = {}  # id(content) -> (content, ranges): once per content


def _score_ranges(content: Content) -> dict[str, tuple[float, float]]:
    """Each model's lowest and highest possible raw score. They do not depend on the answers, so
    they are summed once per content, not on every submit (they were most of a submit's CPU)."""
    entry = _RANGES.get(id(content))
    if entry is None or entry[0] is not content:  # a new content object (tests build several)
        ranges = {}
        for model in content.models:
            bounds = [_bounds(question, model.id) for question in content.questions]
            ranges[model.id] = (sum(low for low, _ in bounds), sum(high for _, high in bounds))
        if len(_RANGES) >= 16:
            _RANGES.clear()
        entry = _RANGES[id(content)] = (content, ranges)
    return entry[1]


def _reason(question: Question, choice: int, delta: float) -> str:
    direction = "+" if delta > 0 else "-"
    return f"{question.text} You answered “{question.choice_label(choice)}” ({direction}{abs(delta):g})"


def score_answers(content: Content, answers: dict) -> list[ModelScore]:
    """Score every model, best first (ties keep content order). Answers must be complete and valid."""
    ranges = _score_ranges(content)
    deltas = [_contributions(question, answers[question.id]) for question in content.questions]
    results = []
    for model in content.models:
        raw = 0.0
        moved = []
        for position, (question, contributions) in enumerate(zip(content.questions, deltas, strict=True)):
            delta = contributions.get(model.id, 0.0)
            raw += delta
            if delta:
                moved.append((-abs(delta), position, question, delta))
        low, high = ranges[model.id]
        score = 50 if high == low else round(100 * (raw - low) / (high - low))
        top = sorted(moved, key=lambda entry: entry[:2])[:MAX_REASONS]
        reasons = tuple(_reason(q, answers[q.id], delta) for _, _, q, delta in top) or (NEUTRAL_REASON,)
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
